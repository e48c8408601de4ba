"""``adapterhub admin restore``: load a backup (see `backup.py`) into an empty registry.

Order matters, so that a damaged backup or a busy target changes nothing:

1. read the manifest and check every table file and blob against its sha256 and size;
2. refuse a target database that holds rows, unless ``force`` (then its rows are replaced);
3. copy the blobs into the target store (content-addressed: adding one is harmless);
4. migrate the target to the backup's schema revision, load every row in one transaction
   (deleting the old rows first under ``force``; PostgreSQL sequences are moved past the ids),
   then migrate to the newest revision, so a backup from an older adapterhub comes up current.

Stop the servers that use the target before restoring into it.

>>> restore(Settings.from_env({"ADAPTERHUB_HOME": "/srv/hub"}), Path("/backups/2024-06-01"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import JSON, Connection, DateTime, Engine, Integer, Table, func, select, text

from adapterhub.registry.server import db
from adapterhub.registry.server.backup import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    BackupError,
    Progress,
    blob_file,
    database_errors,
    reflect,
    table_file,
)
from adapterhub.registry.server.blobstore import CHUNK, BlobStore, open_blobstore
from adapterhub.registry.server.settings import Settings
from adapterhub.registry.server.validation import SHA256_RE

TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
BATCH = 500


def read_manifest(path: Path) -> dict:
    """The manifest, with every file name checked to be the one its table or sha256 implies."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{path} is not a backup: it has no {MANIFEST}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"{path / MANIFEST} is damaged: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path / MANIFEST} is not an adapterhub backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"backup format {manifest.get('format_version')!r} is not supported "
                          f"(this adapterhub reads format {FORMAT_VERSION})")
    try:
        for t in manifest["tables"]:
            if not TABLE_RE.fullmatch(t["name"]) or t["file"] != table_file(t["name"]):
                raise BackupError(f"{path / MANIFEST} lists a bad table entry {t!r}")
        for b in manifest["blobs"]:
            if not SHA256_RE.fullmatch(b["sha256"]) or b["file"] != blob_file(b["sha256"]):
                raise BackupError(f"{path / MANIFEST} lists a bad blob entry {b!r}")
        str(manifest["schema_revision"])
    except (KeyError, TypeError) as exc:
        raise BackupError(f"{path / MANIFEST} is incomplete: {exc!r}") from None
    return manifest


def _check_file(root: Path, rel: str, size: int, sha256: str, tick: Callable[[int], None]) -> None:
    h, n = hashlib.sha256(), 0
    try:
        with open(root / rel, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
                tick(len(chunk))
    except FileNotFoundError:
        raise BackupError(f"backup {root} is damaged: {rel} is missing; nothing was restored") from None
    if n != size or h.hexdigest() != sha256:
        raise BackupError(f"backup {root} is damaged: {rel} hashes to {h.hexdigest()} ({n} bytes), "
                          f"the manifest says {sha256} ({size} bytes); nothing was restored")


def verify(root: Path, manifest: dict, progress: Progress | None = None) -> None:
    """Check every table file and blob against the manifest, and the blob table against the blobs."""
    entries = [(t["file"], t["size"], t["sha256"]) for t in manifest["tables"]]
    entries += [(b["file"], b["size"], b["sha256"]) for b in manifest["blobs"]]
    total, done = sum(size for _, size, _ in entries), 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("verify", done, total)

    for rel, size, sha256 in entries:
        _check_file(root, rel, size, sha256, tick)
    listed = {b["sha256"] for b in manifest["blobs"]}
    rows = {row["sha256"] for row in read_rows(root, "blob")} if any(
        t["name"] == "blob" for t in manifest["tables"]) else set()
    if rows != listed:
        odd = sorted(rows ^ listed)[:3]
        raise BackupError(f"backup {root} is inconsistent: the blob table and the blob files differ "
                          f"(for example {odd}); nothing was restored")


def read_rows(root: Path, table: str) -> Iterator[dict]:
    with open(root / table_file(table), encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _empty(engine: Engine) -> bool:
    with engine.connect() as conn:
        return all(conn.execute(select(t).limit(1)).first() is None for t in reflect(conn))


def _sqlite_file_missing(url: str) -> bool:
    path = url.split("///", 1)[1] if db.is_sqlite(url) and "///" in url else ""
    return bool(path) and path != ":memory:" and not Path(path).exists()


def copy_blobs_in(store: BlobStore, root: Path, manifest: dict, progress: Progress | None) -> None:
    """Write each blob to the store, hashing again on the way (the backup may change under us)."""
    total, done = sum(b["size"] for b in manifest["blobs"]), 0
    for b in manifest["blobs"]:
        with store.upload() as up, open(root / b["file"], "rb") as f:
            while chunk := f.read(CHUNK):
                up.write(chunk)
                done += len(chunk)
                if progress:
                    progress("blobs", done, total)
        if up.sha256 != b["sha256"]:
            up.discard()
            raise BackupError(f"{root / b['file']} changed while restoring: it now hashes to {up.sha256}")
        store.commit(up)


def migrate_to(engine: Engine, revision: str) -> None:
    """Bring the target's schema to ``revision``: up from older (or none), down from newer."""
    cfg = db.alembic_config(engine)
    script = ScriptDirectory.from_config(cfg)
    try:
        older = {r.revision for r in script.iterate_revisions(revision, "base")}
    except CommandError:
        raise BackupError(f"the backup's schema revision {revision!r} is unknown to this adapterhub "
                          "(was it made by a newer version?)") from None
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current is None or current in older:
        db.upgrade(engine, revision)
    else:
        command.downgrade(cfg, revision)


def _decoder(table: Table) -> Callable[[dict], dict]:
    """Turn a JSON row back into column values for this database's reflected column types."""
    dates = {c.name: bool(c.type.timezone) for c in table.columns if isinstance(c.type, DateTime)}
    for c in table.columns:
        if isinstance(c.type, JSON):
            c.type = JSON(none_as_null=True)  # a SQL NULL stays NULL, not the JSON text 'null'

    def decode(row: dict) -> dict:
        unknown = set(row) - set(table.columns.keys())
        if unknown:
            raise BackupError(f"table {table.name}: the backup has columns {sorted(unknown)} the schema lacks")
        for name, tz in dates.items():
            if row.get(name) is not None:
                value = datetime.fromisoformat(row[name])
                value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
                row[name] = value if tz else value.replace(tzinfo=None)
        return row

    return decode


def _reset_sequences(conn: Connection, tables: list[Table]) -> None:
    """PostgreSQL: move each serial id's sequence past the restored ids."""
    for t in tables:
        pk = list(t.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, Integer):
            continue
        name = conn.dialect.identifier_preparer.format_table(t)
        seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": name, "c": pk[0].name}).scalar()
        if seq:
            top = conn.execute(select(func.max(pk[0]))).scalar() or 0
            conn.execute(text("SELECT setval(CAST(:s AS regclass), :v, false)"), {"s": seq, "v": top + 1})


def load_rows(engine: Engine, root: Path, manifest: dict, replace: bool) -> None:
    """Insert every row in one transaction (after deleting the old ones when ``replace``)."""
    with db.writer(engine).begin() as conn:
        tables = reflect(conn)
        have, want = {t.name for t in tables}, {t["name"] for t in manifest["tables"]}
        if have != want:
            raise BackupError(f"the backup's tables {sorted(want)} differ from those of schema "
                              f"{manifest['schema_revision']}: {sorted(have)}")
        if replace:
            for t in reversed(tables):
                conn.execute(t.delete())
        for t in tables:
            decode, rows = _decoder(t), read_rows(root, t.name)
            while batch := [decode(r) for r in islice(rows, BATCH)]:
                conn.execute(t.insert(), batch)
        if conn.dialect.name == "postgresql":
            _reset_sequences(conn, tables)


def restore(settings: Settings, path: Path, force: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Restore the backup at ``path`` into the registry ``settings`` describe; see the module doc."""
    path = Path(path)
    manifest = read_manifest(path)
    verify(path, manifest, progress)
    fresh = _sqlite_file_missing(settings.database_url)
    engine = db.make_engine(settings.database_url)
    try:
        with database_errors(settings.database_url):
            had_rows = not fresh and not _empty(engine)
            if had_rows and not force:
                raise BackupError("the target registry already holds data; restore into an empty one, "
                                  "or pass --force to replace everything in it")
            store = open_blobstore(settings.blob_url, settings.home, settings.s3_endpoint_url, settings.s3_presign)
            copy_blobs_in(store, path, manifest, progress)
            migrate_to(engine, manifest["schema_revision"])
            load_rows(engine, path, manifest, replace=had_rows)
            db.upgrade(engine)
            with engine.connect() as conn:
                now = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    return {"path": str(path), "schema_revision": manifest["schema_revision"], "schema_now": now,
            "tables": {t["name"]: t["rows"] for t in manifest["tables"]}, "blobs": len(manifest["blobs"]),
            "bytes": sum(b["size"] for b in manifest["blobs"]), "replaced": had_rows}
