"""Receiving one blob as a raw request body: streamed to a temp file, hashed, checked, committed.

Both blob uploads take this path: ours (``PUT /api/v1/blobs/{sha256}``) and the Git LFS transfer
the Hugging Face clients use (``PUT`` to a signed URL): one set of rules for what is stored.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session
from starlette.requests import ClientDisconnect

from adapterhub.registry.server.blob_access import record_upload
from adapterhub.registry.server.blobstore import BlobStore
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.publish import record_blob


def refuse_encoding(request: Request) -> None:
    """We never inflate an upload (no bomb can expand here), and storing the encoded bytes would
    serve something other than what the uploader meant."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(415, "UnsupportedEncoding",
                       f"Content-Encoding {encoding!r} is not accepted: send the blob's raw bytes")


def declared_length(request: Request, limit: int) -> int:
    """The body's ``Content-Length``, refused before a byte is read when absent, encoded or too large."""
    refuse_encoding(request)
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "LengthRequired", "send the blob with a Content-Length header")
    declared = int(length)
    if declared > limit:
        raise ApiError(413, "TooLarge", f"blob of {declared} bytes exceeds the limit of {limit}")
    return declared


async def receive_blob(request: Request, store: BlobStore, sha256: str, declared: int) -> int:
    """Stream the body into the store under ``sha256``; its size. Nothing is kept unless the bytes
    are exactly ``declared`` long and hash to ``sha256``."""
    up = store.upload()
    try:  # a full disk (StorageFull, 507) may strike at any write or at the final fsync
        async for chunk in request.stream():
            up.write(chunk)
            if up.size > declared:
                raise ApiError(413, "TooLarge", f"body is longer than its Content-Length {declared}")
        await run_in_threadpool(up.close)
    except ClientDisconnect:
        up.discard()
        raise ApiError(400, "SizeMismatch", "the client disconnected mid-upload") from None
    except BaseException:
        up.discard()
        raise
    if up.size != declared:
        up.discard()
        raise ApiError(422, "SizeMismatch", f"received {up.size} bytes, Content-Length said {declared}")
    if up.sha256 != sha256:
        up.discard()
        raise ApiError(422, "HashMismatch", f"body hashes to {up.sha256}, not {sha256}")
    try:
        await run_in_threadpool(store.commit, up)
    except BaseException:
        up.discard()
        raise
    return up.size


def record(request: Request, user_id: int | None, sha256: str, size: int) -> bool:
    """The blob row, and that this user has now shown they hold its bytes. True (201) when new to
    this user: whether someone else stored the same bytes before is not told (SECURITY.md)."""
    with Session(request.app.state.write_engine) as session:
        new = record_blob(session, sha256, size)
        if user_id is not None:
            new = record_upload(session, sha256, user_id) or new
        return new
