"""``adapterhub admin backup``: a portable, verifiable copy of a registry (database + blobs).

Why a logical dump and not a copy of ``registry.sqlite`` or ``pg_dump``: one format for both
databases, so a SQLite registry can move to PostgreSQL and back, and every byte of it is covered
by a sha256 that `restore` checks before it writes anything.

A backup is a folder::

    manifest.json              format, schema revision, per-table row count + sha256, blob list
    tables/<table>.jsonl       one JSON object per row, keys sorted, datetimes as UTC ISO 8601
    blobs/<ab>/<sha256>        every blob the database lists, named by its sha256

It is written under a temporary name beside ``PATH`` and renamed into place at the end, so a
``PATH`` that exists is always complete. The rows are read in one transaction (a consistent
snapshot); blobs are immutable and content-addressed, so copying them afterwards is safe while the
server keeps running.

>>> backup(Settings.from_env(), Path("/backups/2024-06-01"))  # doctest: +SKIP
{'path': '/backups/2024-06-01', 'schema_revision': '0003', 'tables': {...}, 'blobs': 12, 'bytes': 81234}
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, make_url, select, text
from sqlalchemy.exc import OperationalError

from adapterhub.errors import AdapterHubError
from adapterhub.registry.server import db
from adapterhub.registry.server.blobstore import BlobStore, open_blobstore
from adapterhub.registry.server.settings import Settings

FORMAT = "adapterhub-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SKIPPED_TABLES = {"alembic_version"}  # the revision is recorded in the manifest instead

# (stage, done, total): "blobs" counts bytes; callers draw a progress bar from it
Progress = Callable[[str, int, int], None]


class BackupError(AdapterHubError):
    """A backup that cannot be made or restored; the message names the file or table at fault."""


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """A database that cannot be reached or used becomes one line naming it (password masked)."""
    try:
        yield
    except OperationalError as exc:
        reason = (str(exc.orig).strip().splitlines() or ["unknown error"])[0]
        shown = make_url(url).render_as_string(hide_password=True)
        raise BackupError(f"database {shown} failed: {reason}") from None


def table_file(name: str) -> str:
    return f"tables/{name}.jsonl"


def blob_file(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"


def encode_value(value: Any) -> Any:
    """A column value as JSON: datetimes as aware UTC ISO strings (SQLite hands back naive UTC)."""
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        raise BackupError(f"binary column values are not supported in a backup (got {len(value)} bytes)")
    return value


def reflect(conn: Connection) -> list[Table]:
    """The database's own tables in foreign-key order (parents first), as the schema is now."""
    meta = MetaData()
    meta.reflect(bind=conn)
    return [t for t in meta.sorted_tables if t.name not in SKIPPED_TABLES]


def schema_revision(conn: Connection) -> str:
    try:
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception as exc:  # no alembic_version table: never migrated
        raise BackupError("the database has no schema yet (start the registry once, or restore into it)") from exc
    if len(rows) != 1:
        raise BackupError(f"the database has {len(rows)} schema heads {rows}; expected one")
    return rows[0]


def _rows(conn: Connection, table: Table) -> Iterator[dict]:
    order = list(table.primary_key.columns) or list(table.columns)
    result = conn.execution_options(stream_results=True, yield_per=1000).execute(select(table).order_by(*order))
    for row in result.mappings():
        yield {k: encode_value(v) for k, v in row.items()}


class HashingWriter:
    """A file written with fsync, its sha256 and size counted on the way."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)

    def close(self) -> str:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return self._h.hexdigest()


def dump_tables(engine: Engine, dest: Path) -> tuple[str, list[dict], list[tuple[str, int]]]:
    """Write every table as JSON lines from one snapshot; return (revision, table entries, blobs)."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    with conn, conn.begin():
        revision = schema_revision(conn)
        entries, blobs = [], []
        for table in reflect(conn):
            out, rows = HashingWriter(dest / table_file(table.name)), 0
            for row in _rows(conn, table):
                out.write(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
                rows += 1
                if table.name == "blob":
                    blobs.append((row["sha256"], int(row["size"])))
            entries.append({"name": table.name, "file": table_file(table.name), "rows": rows,
                            "size": out.size, "sha256": out.close()})
    return revision, entries, blobs


def copy_blobs(store: BlobStore, blobs: list[tuple[str, int]], dest: Path,
               progress: Progress | None) -> list[dict]:
    """Copy each blob out of the store, checking it still hashes to its name (a scrub on the way)."""
    total, done, entries = sum(size for _, size in blobs), 0, []
    for sha256, size in blobs:
        if not store.exists(sha256):
            raise BackupError(f"blob {sha256} is listed in the database but missing from the blob store")
        out = HashingWriter(dest / blob_file(sha256))
        for chunk in store.iter_bytes(sha256):
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress("blobs", done, total)
        got = out.close()
        if got != sha256 or out.size != size:
            raise BackupError(f"blob {sha256} in the blob store is corrupt: it hashes to {got} "
                              f"({out.size} bytes, the database says {size})")
        entries.append({"sha256": sha256, "size": size, "file": blob_file(sha256)})
    return entries


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(settings: Settings, path: Path, progress: Progress | None = None) -> dict:
    """Write a backup of the registry ``settings`` describe to the new folder ``path``."""
    path = Path(path)
    if path.exists():
        raise BackupError(f"{path} exists; back up into a new folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    engine = db.make_engine(settings.database_url)
    try:
        tmp.mkdir(mode=0o700)  # it holds private adapters and token hashes
        with database_errors(settings.database_url):
            revision, tables, blob_rows = dump_tables(engine, tmp)
        store = open_blobstore(settings.blob_url, settings.home, settings.s3_endpoint_url, settings.s3_presign)
        blobs = copy_blobs(store, blob_rows, tmp, progress)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "schema_revision": revision,
                    "created_at": datetime.now(UTC).isoformat(), "source": engine.dialect.name,
                    "tables": tables, "blobs": blobs}
        out = HashingWriter(tmp / MANIFEST)
        out.write(json.dumps(manifest, indent=1).encode())
        out.close()
        for folder in [tmp / "tables", *sorted((tmp / "blobs").glob("*")), tmp / "blobs", tmp]:
            if folder.is_dir():
                _fsync_dir(folder)
        os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        engine.dispose()
    return {"path": str(path), "schema_revision": revision, "tables": {t["name"]: t["rows"] for t in tables},
            "blobs": len(blobs), "bytes": sum(b["size"] for b in blobs)}
