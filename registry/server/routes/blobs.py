"""Blobs: ask which are missing, then upload each as a raw body (streamed, hashed, fsynced)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session

from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.blob_access import usable_blobs
from adapterhub.registry.server.blob_receive import declared_length, receive_blob, record
from adapterhub.registry.server.deps import CurrentUser, SettingsDep, StoreDep
from adapterhub.registry.server.errors import ApiError, error_responses
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
    declared = declared_length(request, settings.max_upload_bytes)
    size = await receive_blob(request, store, sha256, declared)
    user_id = principal.user.id if principal.user is not None else None
    new = await run_in_threadpool(record, request, user_id, sha256, size)
    return JSONResponse({"sha256": sha256, "size": size}, status_code=201 if new else 200)
