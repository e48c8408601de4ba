"""Versions: publish (one transaction), list, read, download a file, yank/unyank."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session, select

from adapterhub.format import CONFIG_FILE
from adapterhub.registry.server.crud import (
    audit,
    count_download,
    files_of,
    get_adapter,
    get_version,
    lock_adapter,
    refresh_latest,
    require,
    version_out,
    versions_newest_first,
)
from adapterhub.registry.server.deps import CurrentUser, PrincipalDep, RolloutCacheDep, SessionDep, StoreDep
from adapterhub.registry.server.errors import ApiError, error_responses
from adapterhub.registry.server.models import File, Rollout, Version
from adapterhub.registry.server.publish import publish
from adapterhub.registry.server.responses import FILE_RESPONSES, blob_response
from adapterhub.registry.server.rollouts import RolloutCache
from adapterhub.registry.server.schemas import VersionCreate, VersionOut, YankIn

router = APIRouter(prefix="/adapters/{ns}/{name}/versions", tags=["versions"],
                   responses=error_responses(401, 404, 422, 429, 503))


@router.post("", response_model=VersionOut, status_code=201, responses=error_responses(403, 409))
def create_version(ns: str, name: str, body: VersionCreate, session: SessionDep, principal: CurrentUser,
                   store: StoreDep) -> VersionOut:
    nsrow, adapter = get_adapter(session, principal, ns, name)
    require(principal, "write", nsrow)
    v = publish(session, store, principal, nsrow, adapter, body)
    return version_out(session, v)


@router.get("", response_model=list[VersionOut])
def list_versions(ns: str, name: str, session: SessionDep, principal: PrincipalDep) -> list[VersionOut]:
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    return [version_out(session, v) for v in versions_newest_first(session, adapter.id)]


@router.get("/{version}", response_model=VersionOut)
def read_version(ns: str, name: str, version: str, session: SessionDep, principal: PrincipalDep) -> VersionOut:
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    return version_out(session, get_version(session, adapter, version))


def counts_as_download(session: Session, v: Version, path: str) -> bool:
    """A pull is counted once: on ``adapter_config.json``, or on the first file if there is none."""
    files = files_of(session, v.id)
    paths = [f.path for f in files]
    return path == CONFIG_FILE or (CONFIG_FILE not in paths and paths[:1] == [path])


def file_response(request: Request, session: Session, store, v: Version, path: str,
                  headers: dict[str, str] | None = None) -> Response:
    # a NUL names no file, and PostgreSQL would refuse the look-up (the HF resolve route reaches here)
    f = None if "\x00" in path else session.exec(select(File).where(File.version_id == v.id, File.path == path)).first()
    if f is None:
        raise ApiError(404, "EntryNotFound", f"version {v.version} has no file {path!r}", headers)
    response, whole = blob_response(request, store, f.sha256, f.size, f.path, headers)
    if whole and counts_as_download(session, v, path):
        # hand the read connection back before taking a write one: requests that each hold one
        # pooled connection while waiting for a second can take the whole pool and wait on each
        # other until the pool times out (500s under 50 concurrent pulls on SQLite)
        session.close()
        with Session(request.app.state.write_engine) as ws:
            count_download(ws, v)
    return response


# GET and HEAD as two routes: one ``api_route`` for both gives them one operationId, picked by set order
@router.get("/{version}/files/{path:path}", response_class=Response, responses=FILE_RESPONSES)
@router.head("/{version}/files/{path:path}", response_class=Response, responses=FILE_RESPONSES)
def download_file(ns: str, name: str, version: str, path: str, request: Request, session: SessionDep,
                  principal: PrincipalDep, store: StoreDep) -> Response:
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    return file_response(request, session, store, get_version(session, adapter, version), path)


def _set_yank(ns: str, name: str, version: str, session: Session, principal, yanked: bool,
              reason: str | None, cache: RolloutCache) -> VersionOut:
    nsrow, adapter = get_adapter(session, principal, ns, name)
    require(principal, "write", nsrow)
    adapter = lock_adapter(session, adapter.id)
    v = get_version(session, adapter, version)
    v.yanked, v.yank_reason = yanked, reason
    session.add(v)
    audit(session, principal.name, "version.yank" if yanked else "version.unyank", ns, adapter.id,
          version=version, reason=reason)
    refresh_latest(session, adapter)
    session.commit()
    for row in session.exec(select(Rollout).where(Rollout.adapter_id == adapter.id)).all():
        cache.invalidate(adapter.id, row.alias)  # a yanked arm stops getting traffic now, not a TTL later
    return version_out(session, v)


@router.post("/{version}/yank", response_model=VersionOut, responses=error_responses(403))
def yank(ns: str, name: str, version: str, body: YankIn, session: SessionDep, principal: CurrentUser,
         cache: RolloutCacheDep) -> VersionOut:
    return _set_yank(ns, name, version, session, principal, True, body.reason, cache)


@router.post("/{version}/unyank", response_model=VersionOut, responses=error_responses(403))
def unyank(ns: str, name: str, version: str, session: SessionDep, principal: CurrentUser,
           cache: RolloutCacheDep) -> VersionOut:
    return _set_yank(ns, name, version, session, principal, False, None, cache)
