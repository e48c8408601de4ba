"""Blobs: ask which are missing, then upload each as a raw body (streamed, hashed, fsynced)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session
from starlette.requests import ClientDisconnect

from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.blob_access import record_upload, usable_blobs
from adapterhub.registry.server.deps import CurrentUser, SettingsDep, StoreDep
from adapterhub.registry.server.errors import ApiError, error_responses
from adapterhub.registry.server.publish import record_blob
from adapterhub.registry.server.schemas import BlobOut, BlobsMissingIn, BlobsMissingOut
from adapterhub.registry.server.validation import check_sha256

router = APIRouter(prefix="/blobs", tags=["blobs"], responses=error_responses(401, 403, 422, 429, 503))


def _need_write(principal: Principal) -> None:
    if not principal.has_scope("write"):
        raise ApiError(403, "Forbidden", "uploading blobs needs a write scope")


@router.post("/missing", response_model=BlobsMissingOut)
def missing(body: BlobsMissingIn, request: Request, principal: CurrentUser) -> BlobsMissingOut:
    _need_write(principal)
    wanted = [check_sha256(s) for s in dict.fromkeys(body.sha256)]
    if not wanted:
        return BlobsMissingOut(missing=[])
    with Session(request.app.state.engine) as session:  # a POST that only reads: no wait for the write lock
        have = usable_blobs(session, principal, wanted)  # stored but not provably yours: "missing"
    return BlobsMissingOut(missing=[s for s in wanted if s not in have])


@router.put("/{sha256}", response_model=BlobOut, status_code=201,
            responses={200: {"model": BlobOut, "description": "you had uploaded it already"},
                       **error_responses(400, 411, 413, 415, 507)})
async def upload(sha256: str, request: Request, principal: CurrentUser, store: StoreDep,
                 settings: SettingsDep) -> JSONResponse:
    _need_write(principal)
    check_sha256(sha256)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # we never inflate an upload (no bomb can expand here), and storing the encoded bytes
        # would serve something other than what the uploader meant
        raise ApiError(415, "UnsupportedEncoding",
                       f"Content-Encoding {encoding!r} is not accepted: send the blob's raw bytes")
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "LengthRequired", "send the blob with a Content-Length header")
    declared = int(length)
    if declared > settings.max_upload_bytes:
        raise ApiError(413, "TooLarge", f"blob of {declared} bytes exceeds the limit of {settings.max_upload_bytes}")
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
    new = await run_in_threadpool(_record, request, principal, sha256, up.size)
    return JSONResponse({"sha256": sha256, "size": up.size}, status_code=201 if new else 200)


def _record(request: Request, principal: Principal, sha256: str, size: int) -> bool:
    """The blob row, and that this user has now shown they hold its bytes. True (201) when new to
    this user: whether someone else stored the same bytes before is not told (SECURITY.md)."""
    with Session(request.app.state.write_engine) as session:
        new = record_blob(session, sha256, size)
        if principal.user is not None:
            new = record_upload(session, sha256, principal.user.id) or new
        return new
