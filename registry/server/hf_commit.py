"""Reading one Hugging Face NDJSON commit (``POST /api/models/{repo}/commit/{rev}``) into a plan.

The body is a ``header`` line, then one line per operation: ``file`` (the bytes, base64, for files
the preupload answered "regular"), ``lfsFile`` (a sha256 already sent by LFS), ``deletedFile``,
``deletedFolder``. Every line is checked as it arrives, with the rules of a normal push (paths,
pickles, safetensors headers, the adapter config), and the bytes of ``file`` lines go to temp
uploads that are committed to the blob store only once the whole commit is known to be good:
a refused commit, or a connection cut in the middle of one, leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi.concurrency import run_in_threadpool

from adapterhub.format import CONFIG_FILE, README_FILE, FormatError, parse_json
from adapterhub.registry.server import validation as val
from adapterhub.registry.server.blobstore import BlobStore, Upload
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.hf_ndjson import CommitBody
from adapterhub.registry.server.publish import check_content
from adapterhub.registry.server.schemas import FileEntry

OPERATIONS = ("file", "lfsFile", "deletedFile", "deletedFolder")
MAX_CARD_BYTES = 4 * 1024 * 1024  # of a README.md, read for its metadata (`card_meta` caps the text)


def _invalid(line: int, message: str) -> ApiError:
    return ApiError(400, "InvalidCommit", f"commit line {line}: {message}")


@dataclass
class Addition:
    path: str
    sha256: str
    size: int
    upload: Upload | None = None  # the bytes of a "file" line; None for an "lfsFile" (already stored)


@dataclass
class CommitPlan:
    summary: str = ""
    description: str = ""
    parent: str | None = None
    additions: dict[str, Addition] = field(default_factory=dict)
    deleted_files: list[str] = field(default_factory=list)
    deleted_folders: list[str] = field(default_factory=list)
    readme: str | None = None  # the README.md this commit adds, for the version its card may name
    config: dict | None = None  # the adapter_config.json it adds, for the adapter's search fields

    def discard(self) -> None:
        for a in self.additions.values():
            if a.upload is not None:
                a.upload.discard()

    def apply(self, base: list[FileEntry]) -> tuple[list[FileEntry], list[str]]:
        """The new version's files: the base's, less the deletions, plus the additions; and the
        deleted paths that the base does not hold."""
        files = {f.path: f for f in base}
        missing = []
        for path in self.deleted_files:
            if files.pop(path, None) is None:
                missing.append(path)
        for folder in self.deleted_folders:
            prefix = folder.rstrip("/") + "/"
            gone = [p for p in files if p.startswith(prefix)]
            if not gone:
                missing.append(prefix)
            for p in gone:
                del files[p]
        for a in self.additions.values():
            files[a.path] = FileEntry(path=a.path, sha256=a.sha256, size=a.size)
        return sorted(files.values(), key=lambda f: f.path), missing


def _value(line: int, obj: object, keys: tuple[str, ...]) -> dict:
    if not isinstance(obj, dict) or set(obj) - {"key", "value"} or not isinstance(obj.get("value"), dict):
        raise _invalid(line, 'expected {"key": ..., "value": {...}}')
    value = obj["value"]
    for k in keys:
        if k not in value:
            raise _invalid(line, f"{obj['key']!r} needs {k!r}")
    return value


def _path(line: int, value: dict) -> str:
    path = value["path"]
    if not isinstance(path, str):
        raise _invalid(line, f"path must be a string, got {path!r}")
    path = path.removeprefix("/")  # the client strips one leading slash too
    val.check_path(path)
    val.check_not_pickle(path)
    return path


def read_part(up: Upload, start: int, end: int | None) -> bytes:
    with open(up.path, "rb") as f:
        f.seek(start)
        return f.read(-1 if end is None else end - start)


def _store_bytes(store: BlobStore, data: bytes) -> Upload:
    up = store.upload()
    try:
        up.write(data)
        up.close()
    except BaseException:
        up.discard()
        raise
    return up


def _add(plan: CommitPlan, line: int, addition: Addition) -> None:
    if addition.path in plan.additions:
        raise _invalid(line, f"{addition.path!r} is added twice")
    plan.additions[addition.path] = addition


async def _file_line(body: CommitBody, store: BlobStore, limit: int, streamed: bool,
                     raw: bytes | None) -> tuple[int, dict, Upload]:
    """A "file" operation's value and its bytes in a closed temp upload (streamed when the line has
    `huggingface_hub`'s layout, else decoded from the whole line)."""
    if streamed:
        up, raw = await body.file_content(store, limit, "")
        number = body.number
    else:
        number, up = body.number, None
    try:
        obj = _json(number, raw)
        value = _value(number, obj, ("path", "content"))
        if value.get("encoding", "base64") != "base64" or not isinstance(value["content"], str):
            raise _invalid(number, "content must be a base64 string (encoding 'base64')")
        if up is None:
            try:
                data = base64.b64decode(value["content"], validate=True)
            except (binascii.Error, ValueError):
                raise _invalid(number, "content is not valid base64") from None
            if len(data) > limit:
                raise ApiError(413, "TooLarge", f"a file sent inside a commit may be at most {limit} bytes "
                                                "(larger files go by LFS: the preupload answers 'lfs')")
            up = await run_in_threadpool(_store_bytes, store, data)
    except BaseException:
        if up is not None:
            up.discard()
        raise
    return number, value, up


def _json(number: int, raw: bytes) -> object:
    try:
        return parse_json(raw, f"commit line {number}")
    except FormatError as exc:
        raise _invalid(number, f"not a JSON object ({exc})") from None


async def read_commit(stream: AsyncIterator[bytes], store: BlobStore, regular_max: int, upload_max: int,
                      body_max: int) -> CommitPlan:
    """Parse and check the whole body; on any refusal the temp uploads are gone and ApiError says why."""
    plan, body = CommitPlan(), CommitBody(stream, body_max)
    limit = min(regular_max, upload_max)
    try:
        header = await body.line()
        while header is not None and not header.strip():
            header = await body.line()
        if header is None:
            raise ApiError(400, "InvalidCommit", 'the commit is empty: it needs a "header" line')
        obj = _json(body.number, header)
        key = obj.get("key") if isinstance(obj, dict) else None
        if key != "header":
            raise _invalid(body.number, f'the first line must be the "header", not {key!r}')
        value = _value(body.number, obj, ("summary",))
        plan.summary, plan.description = str(value["summary"] or ""), str(value.get("description") or "")
        plan.parent = str(value["parentCommit"]) if value.get("parentCommit") else None
        while True:
            streamed = await body.starts_file_line()
            raw = None if streamed else await body.line()
            if raw is not None and not raw.strip():
                continue
            if not streamed and raw is None:
                break
            obj = None if streamed else _json(body.number, raw)
            key = "file" if streamed else (obj.get("key") if isinstance(obj, dict) else None)
            if key not in OPERATIONS:
                raise _invalid(body.number, f"unknown operation {key!r}; expected one of {', '.join(OPERATIONS)}")
            if key == "file":
                number, value, up = await _file_line(body, store, limit, streamed, raw)
                try:
                    _add_file(plan, number, value, up)
                except BaseException:
                    up.discard()
                    raise
            elif key == "lfsFile":
                value = _value(body.number, obj, ("path", "oid", "size"))
                path = _path(body.number, value)
                if value.get("algo", "sha256") != "sha256":
                    raise _invalid(body.number, f"{path}: only sha256 LFS objects are accepted, not {value.get('algo')!r}")
                size = value["size"]
                if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                    raise _invalid(body.number, f"{path}: size must be a non-negative integer, got {size!r}")
                _add(plan, body.number, Addition(path, val.check_sha256(value["oid"]), size))
            else:
                path = _value(body.number, obj, ("path",))["path"]
                if not isinstance(path, str) or not path.strip("/"):
                    raise _invalid(body.number, f"{key} needs a non-empty path, got {path!r}")
                (plan.deleted_files if key == "deletedFile" else plan.deleted_folders).append(path.strip("/"))
    except BaseException:
        plan.discard()
        raise
    return plan


def _add_file(plan: CommitPlan, number: int, value: dict, up: Upload) -> None:
    """Check a file's path and bytes with the rules of a push, then keep it in the plan."""
    path = _path(number, value)
    parsed = check_content(path, up.size, lambda start, end: read_part(up, start, end))
    if path == CONFIG_FILE:
        plan.config = parsed
    if path == README_FILE:
        plan.readme = read_part(up, 0, MAX_CARD_BYTES).decode("utf-8", "replace")
    _add(plan, number, Addition(path, up.sha256, up.size, up))
