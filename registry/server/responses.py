"""Streaming a blob: ETag = quoted sha256, ``Range: bytes=N-M`` -> 206, ``If-None-Match`` -> 304."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from adapterhub.registry.server.blobstore import BlobStore

RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# Wider than any blob; longer digit strings are read as this rather than converted (Python refuses
# to convert an integer of over 4300 digits, which would answer 500)
_FAR = 10**18


def _offset(digits: str) -> int:
    return int(digits) if len(digits) <= 18 else _FAR


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``(start, end_inclusive)``, None for no/ignored range, ``"unsatisfiable"`` for 416.

    RFC 9110 14.1.2: a suffix range (``bytes=-N``) of an empty representation is unsatisfiable,
    like any range on it, rather than the impossible ``bytes 0--1/0``.

    >>> parse_range("bytes=-5", 10), parse_range("bytes=-5", 0), parse_range("bytes=0-", 0)
    ((5, 9), 'unsatisfiable', 'unsatisfiable')
    """
    if not header:
        return None
    m = RANGE_RE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # unsupported forms (several ranges) fall back to the whole body
    if not m.group(1):
        n = _offset(m.group(2))
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = _offset(m.group(1))
    end = _offset(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 5987)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def blob_response(request: Request, store: BlobStore, sha256: str, size: int, filename: str,
                  headers: dict[str, str] | None = None, attachment: bool = True) -> tuple[Response, bool]:
    """The response, and whether it sends the whole file (a 200 GET: what counts as a download, so
    range requests, HEADs and revalidations cannot inflate the count)."""
    etag = f'"{sha256}"'
    h = {"ETag": etag, "Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff", **(headers or {})}
    if attachment:
        h["Content-Disposition"] = content_disposition(filename.rsplit("/", 1)[-1])
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=h), False
    rng = parse_range(request.headers.get("range"), size)
    if rng == "unsatisfiable":
        h["Content-Range"] = f"bytes */{size}"
        return Response(status_code=416, headers=h), False
    status, start, end = 200, 0, size - 1
    if rng is not None:
        status, (start, end) = 206, rng
        h["Content-Range"] = f"bytes {start}-{end}/{size}"
    h["Content-Length"] = str(max(0, end - start + 1))
    if request.method == "HEAD":
        return Response(status_code=status, headers=h, media_type="application/octet-stream"), False
    body = _opened(store.iter_bytes(sha256, start, end + 1))
    return StreamingResponse(body, status_code=status, headers=h, media_type="application/octet-stream"), status == 200


def _opened(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Read the first chunk now, before the status line goes out: a store that cannot open the
    blob (bucket unreachable, file gone) then fails the request with a clean error status
    instead of cutting off a 200 response mid-body."""
    first = next(chunks, None)
    return chunks if first is None else itertools.chain((first,), chunks)


_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
# What `blob_response` answers, for the OpenAPI document of the routes that return it
# (``response_class=Response`` there, so FastAPI does not also advertise a JSON 200).
FILE_RESPONSES: dict[int | str, dict] = {
    200: {"description": "the file's bytes (no body on HEAD)", "content": _BYTES},
    206: {"description": "the requested range (``Range: bytes=N-M``), with Content-Range", "content": _BYTES},
    304: {"description": "unchanged: If-None-Match matched the ETag"},
    416: {"description": "the range is not satisfiable; Content-Range gives the size"},
}
