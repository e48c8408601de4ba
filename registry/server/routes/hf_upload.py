"""Pushing files the Hugging Face way (HF_PROTOCOL.md, the write half): preupload, the NDJSON
commit, and legacy Git LFS for files too large to travel inside a commit.

Files up to ``ADAPTERHUB_HF_REGULAR_MAX_BYTES`` are answered ``"regular"``: they ride base64 in the
commit, so clients with ``hf_xet`` installed never ask for Xet storage and push with no environment
variable. Larger files are ``"lfs"``: clients without Xet (or with ``HF_HUB_DISABLE_XET=1``) send
them by the LFS batch API to a signed URL; a Xet client is told exactly that.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlmodel import Session
from starlette.requests import ClientDisconnect

from adapterhub.format import is_trainer_state
from adapterhub.registry.server import signing
from adapterhub.registry.server import validation as val
from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.blob_access import usable_blobs
from adapterhub.registry.server.blob_receive import receive_blob, record, refuse_encoding
from adapterhub.registry.server.crud import files_of
from adapterhub.registry.server.deps import CurrentUser, HfPrincipalDep, SettingsDep, StoreDep
from adapterhub.registry.server.errors import ApiError, error_responses
from adapterhub.registry.server.hf_commit import read_commit
from adapterhub.registry.server.hf_publish import base_version, land_commit
from adapterhub.registry.server.routes.hf import hf_adapter
from adapterhub.registry.server.routes.hf_repos import endpoint

router = APIRouter(tags=["huggingface"], responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))
JsonBody = Annotated[dict[str, Any], Body()]
MAX_PREUPLOAD_FILES = 256  # what the client sends per call
LFS_JSON = "application/vnd.git-lfs+json"


def _read_session(request: Request) -> Session:
    return Session(request.app.state.engine, expire_on_commit=False)


@router.post("/api/models/{ns}/{name}/preupload/{rev}")
def preupload(ns: str, name: str, rev: str, body: JsonBody, request: Request, principal: CurrentUser,
              settings: SettingsDep) -> dict:
    """Upload modes, refusing a bad path or a pickle before any byte is sent."""
    if request.query_params.get("create_pr") in ("1", "true", "True"):
        raise ApiError(400, "PullRequestsUnsupported", "this registry has no pull requests: commit to main or a branch")
    files = body.get("files")
    if not isinstance(files, list) or len(files) > MAX_PREUPLOAD_FILES:
        raise ApiError(400, "BadRequest", f'"files" must be a list of at most {MAX_PREUPLOAD_FILES} entries')
    with _read_session(request) as session:
        _nsrow, adapter = hf_adapter(session, principal, ns, name, "write")
        base, _alias = base_version(session, adapter, rev)
        held = {f.path: f.sha256 for f in files_of(session, base.id)} if base is not None else {}
    regular = min(settings.hf_regular_max_bytes, settings.max_upload_bytes)
    out = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("size"), int) or isinstance(f.get("size"), bool):
            raise ApiError(400, "BadRequest", 'each file needs "path" and an integer "size"')
        path = val.check_path(f.get("path"))
        if is_trainer_state(path):  # Trainer's pickled state: left out of the push, not refused
            out.append({"path": path, "uploadMode": "regular", "shouldIgnore": True})
            continue
        val.check_not_pickle(path)
        if f["size"] > settings.max_upload_bytes:
            raise ApiError(413, "TooLarge", f"{path} is {f['size']} bytes; the limit is {settings.max_upload_bytes}")
        mode = "regular" if f["size"] <= regular else "lfs"
        entry = {"path": path, "uploadMode": mode, "shouldIgnore": False}
        if mode == "lfs" and path in held:  # the client skips a file whose sha256 matches
            entry["oid"] = held[path]
        out.append(entry)
    return {"files": out, "commitOid": base.commit if base is not None else None}


@router.post("/api/models/{ns}/{name}/commit/{rev}")
async def commit(ns: str, name: str, rev: str, request: Request, principal: CurrentUser, store: StoreDep,
                 settings: SettingsDep) -> JSONResponse:
    """A new immutable version (`hf_publish`); the body is streamed and checked line by line
    before anything is stored."""
    if request.query_params.get("create_pr") in ("1", "true", "True"):
        raise ApiError(400, "PullRequestsUnsupported", "this registry has no pull requests: commit to main or a branch")
    with _read_session(request) as session:  # refuse early, and hold no write lock while the body streams
        _nsrow, adapter = hf_adapter(session, principal, ns, name, "write")
        base_version(session, adapter, rev)
    try:
        plan = await read_commit(request.stream(), store, settings.hf_regular_max_bytes, settings.max_upload_bytes,
                                 settings.hf_commit_max_bytes)
    except ClientDisconnect:
        raise ApiError(400, "IncompleteCommit", "the client disconnected mid-commit; nothing was written") from None
    try:
        v, _new = await run_in_threadpool(_land, request, principal, store, ns, name, plan, rev)
    finally:
        plan.discard()
    base = endpoint(request)
    return JSONResponse({"commitUrl": f"{base}/{ns}/{name}/commit/{v.commit}", "commitOid": v.commit,
                         "pullRequestUrl": None, "version": v.version})


def _land(request: Request, principal: Principal, store, ns: str, name: str, plan, rev: str):
    with Session(request.app.state.write_engine, expire_on_commit=False) as session:
        nsrow, adapter = hf_adapter(session, principal, ns, name, "write")
        return land_commit(session, store, principal, nsrow, adapter, plan, rev)


@router.get("/api/models/{ns}/{name}/xet-write-token/{rev}")
def xet_write_token(ns: str, name: str, rev: str, principal: HfPrincipalDep, settings: SettingsDep) -> Response:
    """Asked by a client with ``hf_xet`` for a file the preupload marked ``"lfs"``."""
    limit = min(settings.hf_regular_max_bytes, settings.max_upload_bytes)
    raise ApiError(400, "XetUnsupported", f"this registry does not speak Xet: files up to {limit} bytes are pushed "
                                          "inside the commit; for a larger one set HF_HUB_DISABLE_XET=1 so the client "
                                          "uses Git LFS (or raise ADAPTERHUB_HF_REGULAR_MAX_BYTES on the registry)")


def _key(request: Request) -> bytes:
    settings = request.app.state.settings
    return signing.signing_key(settings.signing_key, settings.home)


def _lfs_error(message: str) -> ApiError:
    return ApiError(400, "LfsRefused", message)


@router.post("/{ns}/{name}.git/info/lfs/objects/batch", response_model=None,
             responses={200: {"description": "an upload action per object", "content": {LFS_JSON: {"schema": {"type": "object"}}}}})
def lfs_batch(ns: str, name: str, body: JsonBody, request: Request, principal: CurrentUser,
              settings: SettingsDep) -> JSONResponse:
    """Legacy LFS: an upload URL signed for each object the caller has not already proven they hold."""
    if body.get("operation") != "upload":
        raise _lfs_error("only the upload operation is served here; downloads go by /resolve/")
    objects = body.get("objects")
    if not isinstance(objects, list) or len(objects) > MAX_PREUPLOAD_FILES:
        raise _lfs_error(f'"objects" must be a list of at most {MAX_PREUPLOAD_FILES} entries')
    with _read_session(request) as session:
        hf_adapter(session, principal, ns, name, "write")
        shas = [o.get("oid") for o in objects if isinstance(o, dict) and isinstance(o.get("oid"), str)]
        have = usable_blobs(session, principal, [s for s in shas if val.SHA256_RE.fullmatch(s)])
    key, base, out = _key(request), endpoint(request), []
    user_id = principal.user.id if principal.user is not None else 0
    for o in objects:
        oid, size = (o.get("oid"), o.get("size")) if isinstance(o, dict) else (None, None)
        if not isinstance(oid, str) or not val.SHA256_RE.fullmatch(oid) or not isinstance(size, int) or size < 0:
            out.append({"oid": str(oid), "size": size, "error": {"code": 422, "message": "need a sha256 oid and a size"}})
        elif size > settings.max_upload_bytes:
            out.append({"oid": oid, "size": size, "error": {
                "code": 413, "message": f"{size} bytes is over the limit of {settings.max_upload_bytes}"}})
        elif have.get(oid) == size:
            out.append({"oid": oid, "size": size, "authenticated": True})
        else:
            query = signing.upload_query(key, oid, size, user_id)
            out.append({"oid": oid, "size": size, "authenticated": True,
                        "actions": {"upload": {"href": f"{base}/api/lfs/upload/{oid}?{query}",
                                               "expires_in": signing.UPLOAD_URL_TTL_S}}})
    return JSONResponse({"transfer": "basic", "objects": out, "hash_algo": "sha256"}, media_type=LFS_JSON)


@router.put("/api/lfs/upload/{oid}", status_code=200, responses=error_responses(400, 403, 413, 415, 422, 507))
async def lfs_upload(oid: str, size: int, user: int, expires: int, signature: str, request: Request,
                     store: StoreDep) -> Response:
    """The PUT an LFS client sends with no ``Authorization``: the signed URL is the permission."""
    val.check_sha256(oid)
    problem = signing.check_grant(_key(request), signing.UploadGrant(oid, size, user, expires), signature)
    if problem:
        raise ApiError(403, "Forbidden", problem)
    length = request.headers.get("content-length")
    if length is not None and length != str(size):
        raise ApiError(422, "SizeMismatch", f"Content-Length {length} is not the {size} bytes the URL was signed for")
    refuse_encoding(request)
    got = await receive_blob(request, store, oid, size)
    await run_in_threadpool(record, request, user or None, oid, got)
    return Response(status_code=200)
