"""Blob uploads and version publishing: validate everything first, then one transaction.

A version is visible only once its transaction commits, and its rows (version, files, download
counter, alias move, audit entry) commit together, so a crash leaves either all or nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from adapterhub import adapters_folder as af
from adapterhub.base_compat import header_shapes
from adapterhub.format import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
from adapterhub.registry.reference import check_alias, check_version
from adapterhub.registry.server import validation as val
from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.bases import adapter_base_name, gate
from adapterhub.registry.server.blob_access import usable_blobs
from adapterhub.registry.server.blobstore import BlobStore
from adapterhub.registry.server.crud import audit, lock_adapter, refresh_latest, set_alias
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.models import Adapter, Blob, DownloadCount, File, Namespace, Version
from adapterhub.registry.server.rollouts import guard_alias
from adapterhub.registry.server.schemas import FileEntry, VersionCreate

JSON_FILES = {CONFIG_FILE: "config", CARD_FILE: "card"}
ADAPTERS_JSON = frozenset(af.JSON_FILES)  # AdapterHub's adapters folders: checked at any depth
MAX_JSON = 16 * 1024 * 1024


@dataclass
class Contents:
    """What a version's files say, read from headers and JSON only: the stored config and card, the
    shapes the base-model gate judges, and an ``adapters`` folder's own files at its top."""

    config: dict = field(default_factory=dict)  # adapter_config.json (ours, PEFT's or adapters')
    card: dict = field(default_factory=dict)  # adapterhub.json
    tensors: dict[str, list[int]] = field(default_factory=dict)  # adapter_model.safetensors
    adapters_json: dict[str, dict] = field(default_factory=dict)  # head, fusion and setup configs
    adapters_shapes: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # adapter.safetensors, ...

    @property
    def is_adapters(self) -> bool:
        return af.is_adapters_folder(self.config, tuple(self.adapters_json))

    @property
    def gate_config(self) -> dict:
        """The config the gate judges: a fusion folder's own when it has no adapter_config.json."""
        return self.config or self.adapters_json.get(af.FUSION_CONFIG_FILE) or {}


def record_blob(session: Session, sha256: str, size: int) -> bool:
    """Insert the blob row unless present (safe when two uploads of one blob race); True if new."""
    dialect = session.get_bind().dialect.name
    stmt = {"postgresql": pg_insert, "sqlite": sqlite_insert}.get(dialect)
    if stmt is None:
        if session.get(Blob, sha256) is not None:
            return False
        session.exec(insert(Blob).values(sha256=sha256, size=size))
        session.commit()
        return True
    result = session.exec(stmt(Blob).values(sha256=sha256, size=size).on_conflict_do_nothing())
    session.commit()
    return result.rowcount == 1


def manifest_commit(ns: str, name: str, version: str, files: list[FileEntry]) -> str:
    """The version's fixed 40-hex commit id: sha1 of its canonical manifest."""
    manifest = {"namespace": ns, "name": name, "version": version,
                "files": sorted([f.path, f.sha256, f.size] for f in files)}
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()


def check_files(files: list[FileEntry]) -> None:
    """Each path alone, then the set as a whole: a version is immutable, so one that no client can
    write out (a file that is also a folder, case twins) would stay broken for ever."""
    if not files:
        raise val.ValidationError("InvalidManifest", "a version needs at least one file")
    val.check_file_count(len(files))
    seen: set[str] = set()
    for f in files:
        val.check_path(f.path)
        val.check_not_pickle(f.path)
        val.check_sha256(f.sha256)
        if f.path in seen:
            raise val.ValidationError("InvalidManifest", f"path {f.path!r} is listed twice")
        seen.add(f.path)
    val.check_file_set([f.path for f in files])


def check_blobs(session: Session, principal: Principal, files: list[FileEntry]) -> None:
    """Every file's blob stored and usable by the caller (`blob_access`); a blob they may not use
    reads as missing, and its size is never named."""
    sizes = usable_blobs(session, principal, sorted({f.sha256 for f in files}))
    missing = [f.path for f in files if f.sha256 not in sizes]
    if missing:
        raise ApiError(422, "BlobMissing", f"upload these files first (their blobs are missing): {', '.join(missing)}")
    for f in files:
        if sizes[f.sha256] != f.size:
            raise ApiError(422, "SizeMismatch",
                           f"{f.path}: declared {f.size} bytes, the uploaded blob has {sizes[f.sha256]}")


def check_content(path: str, size: int, read: Callable[[int, int | None], bytes]) -> dict | None:
    """Check one file of a version from the parts ``read(start, end)`` gives (headers only for
    weights); the parsed JSON for the cards, else None. A push reads from the store, an HF commit
    from the bytes before they are stored: one set of rules."""
    name = path.rsplit("/", 1)[-1]
    if path in JSON_FILES or name in ADAPTERS_JSON:
        if size > MAX_JSON:
            raise val.ValidationError("InvalidManifest", f"{path} is {size} bytes; the limit is {MAX_JSON}")
        parsed = val.parse_json_object(path, read(0, None))
        if name == CONFIG_FILE and af.looks_like_adapters_config(parsed):
            val.check_adapters_config(parsed, path)
        elif path == CONFIG_FILE:
            val.check_adapter_config(parsed)
        elif name in ADAPTERS_JSON and name != CONFIG_FILE:
            val.check_adapters_json(path, parsed)
        return parsed
    if path.lower().endswith(".safetensors"):
        n = val.safetensors_header_length(path, read(0, 8), size)
        return val.check_safetensors_header(path, read(8, 8 + n), size)
    return None


def read_contents(files: list[FileEntry], read: Callable[[FileEntry, int, int | None], bytes]) -> Contents:
    """Check every file (`check_content`) and gather what the version says; ``read(file, start, end)``
    gives a file's bytes (headers only for weights)."""
    out = Contents()
    for f in files:
        content = check_content(f.path, f.size, lambda start, end, f=f: read(f, start, end))
        if f.path in JSON_FILES:
            setattr(out, JSON_FILES[f.path], content)
        elif f.path in ADAPTERS_JSON:
            out.adapters_json[f.path] = content
        elif f.path == WEIGHTS_FILE:
            out.tensors = header_shapes(content)
        elif f.path in af.SAFETENSORS_FILES:
            out.adapters_shapes[f.path] = header_shapes(content)
    return out


def _read_contents(store: BlobStore, files: list[FileEntry]) -> Contents:
    return read_contents(files, lambda f, start, end: store.read(f.sha256, start, end))


def gate_contents(session: Session, contents: Contents, adapter: Adapter) -> tuple[list[str], list[str]]:
    """The base-model gate (`bases.gate`) over what the files say."""
    config = contents.gate_config
    return gate(session, config, contents.tensors, adapter_base_name(config, adapter.base_model),
                shapes=contents.adapters_shapes)


def library_fields(adapter: Adapter, contents: Contents) -> None:
    """An ``adapters`` folder marks its adapter with the library's tag (what search and the Hub's
    ``library`` filter read) and fills the search fields it left empty (method, task, base)."""
    if not contents.is_adapters:
        return
    fields = af.folder_fields(contents.config) if contents.config else {"tags": [af.LIBRARY]}
    for key in ("method", "task", "base_model"):
        value = fields.get(key)
        if isinstance(value, str) and not getattr(adapter, key):
            setattr(adapter, key, value[:64 if key == "method" else 200])
    if af.LIBRARY not in (adapter.tags or []):
        adapter.tags = [*(adapter.tags or []), af.LIBRARY]
        adapter.tags_text = "," + ",".join(adapter.tags) + ","


def publish(session: Session, store: BlobStore, principal: Principal, ns: Namespace, adapter: Adapter,
            body: VersionCreate) -> Version:
    actor = principal.name
    check_version(body.version)
    if body.alias is not None:
        check_alias(body.alias)
    _raise_if_exists(session, adapter, body.version)
    check_files(body.files)
    check_blobs(session, principal, body.files)
    contents = _read_contents(store, body.files)
    engines, warnings = gate_contents(session, contents, adapter)
    try:
        adapter = lock_adapter(session, adapter.id)
        _raise_if_exists(session, adapter, body.version)
        if body.alias:
            guard_alias(session, adapter.id, body.alias)
        v = Version(adapter_id=adapter.id, version=body.version,
                    commit=manifest_commit(ns.name, adapter.name, body.version, body.files),
                    created_by=actor, size=sum(f.size for f in body.files), engines=engines, warnings=warnings,
                    config=contents.config, card=contents.card)
        session.add(v)
        session.flush()
        for f in body.files:
            session.add(File(version_id=v.id, path=f.path, sha256=f.sha256, size=f.size))
        session.add(DownloadCount(version_id=v.id, count=0))
        audit(session, actor, "version.publish", ns.name, adapter.id, version=v.version, commit=v.commit,
              files=len(body.files), size=v.size)
        if body.alias:
            set_alias(session, actor, ns, adapter, body.alias, v)
        library_fields(adapter, contents)
        refresh_latest(session, adapter)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise _exists(adapter, body.version) from None
    return v


def _exists(adapter: Adapter, version: str) -> ApiError:
    return ApiError(409, "VersionExists", f"version {version} of {adapter.name!r} exists; versions are immutable")


def _raise_if_exists(session: Session, adapter: Adapter, version: str) -> None:
    if session.exec(select(Version.id).where(Version.adapter_id == adapter.id, Version.version == version)).first():
        raise _exists(adapter, version)
