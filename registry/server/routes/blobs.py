"""Blobs: ask which are missing, then upload each as a raw body (streamed, hashed, fsynced)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session, select
from starlette.requests import ClientDisconnect

from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.deps import CurrentUser, SessionDep, SettingsDep, StoreDep
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.models import Blob
from adapterhub.registry.server.publish import record_blob
from adapterhub.registry.server.schemas import BlobOut, BlobsMissingIn, BlobsMissingOut
from adapterhub.registry.server.validation import check_sha256

router = APIRouter(prefix="/blobs", tags=["blobs"])


def _need_write(principal: Principal) -> None:
    if not principal.has_scope("write"):
        raise ApiError(403, "Forbidden", "uploading blobs needs a write scope")


@router.post("/missing", response_model=BlobsMissingOut)
def missing(body: BlobsMissingIn, session: SessionDep, principal: CurrentUser) -> BlobsMissingOut:
    _need_write(principal)
    wanted = [check_sha256(s) for s in dict.fromkeys(body.sha256)]
    have = set(session.exec(select(Blob.sha256).where(Blob.sha256.in_(wanted))).all()) if wanted else set()
    return BlobsMissingOut(missing=[s for s in wanted if s not in have])


@router.put("/{sha256}", response_model=BlobOut, status_code=201,
            responses={200: {"model": BlobOut, "description": "already present"}})
async def upload(sha256: str, request: Request, principal: CurrentUser, store: StoreDep,
                 settings: SettingsDep) -> JSONResponse:
    _need_write(principal)
    check_sha256(sha256)
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "LengthRequired", "send the blob with a Content-Length header")
    declared = int(length)
    if declared > settings.max_upload_bytes:
        raise ApiError(413, "TooLarge", f"blob of {declared} bytes exceeds the limit of {settings.max_upload_bytes}")
    up = store.upload()
    try:
        async for chunk in request.stream():
            up.write(chunk)
            if up.size > declared:
                raise ApiError(413, "TooLarge", f"body is longer than its Content-Length {declared}")
    except ClientDisconnect:
        up.discard()
        raise ApiError(400, "SizeMismatch", "the client disconnected mid-upload") from None
    except BaseException:
        up.discard()
        raise
    await run_in_threadpool(up.close)
    if up.size != declared:
        up.discard()
        raise ApiError(422, "SizeMismatch", f"received {up.size} bytes, Content-Length said {declared}")
    if up.sha256 != sha256:
        up.discard()
        raise ApiError(422, "HashMismatch", f"body hashes to {up.sha256}, not {sha256}")
    await run_in_threadpool(store.commit, up)
    new = await run_in_threadpool(_record, request, sha256, up.size)
    return JSONResponse({"sha256": sha256, "size": up.size}, status_code=201 if new else 200)


def _record(request: Request, sha256: str, size: int) -> bool:
    with Session(request.app.state.write_engine) as session:
        return record_blob(session, sha256, size)
