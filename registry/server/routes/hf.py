"""The Hugging Face Hub protocol subset (see shared/HF_PROTOCOL.md): repo info, tree, resolve.

A repo id ``ns/name`` is an adapter; a revision is a version, an alias, a commit id or ``main``.
Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session, select

from adapterhub import adapters_folder as af
from adapterhub.errors import InvalidReferenceError
from adapterhub.registry.reference import DEFAULT_REVISION
from adapterhub.registry.server.auth import aware
from adapterhub.registry.server.base_mirror import base_info, mirrored_base, resolve_base_file
from adapterhub.registry.server.bases import files_of_base
from adapterhub.registry.server.crud import files_of, get_adapter, require, resolve_revision
from adapterhub.registry.server.deps import HfPrincipalDep, SessionDep, StoreDep
from adapterhub.registry.server.errors import ApiError, error_responses
from adapterhub.registry.server.models import Adapter, File, Namespace, Version
from adapterhub.registry.server.responses import FILE_RESPONSES
from adapterhub.registry.server.routes.versions import file_response
from adapterhub.registry.server.search import PEFT_LIBRARY, library_of_tags

# The OpenAPI entries only describe what the HF protocol (shared/HF_PROTOCOL.md) answers: 404 with
# X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound; an unknown token reads as anonymous.
router = APIRouter(tags=["huggingface"], responses=error_responses(404, 422, 503))
api = APIRouter(prefix="/api/models/{ns}/{name}", tags=["huggingface"], responses=error_responses(404, 422, 503))
RESOLVE_RESPONSES = {**FILE_RESPONSES, 302: {"description": "to a presigned bucket URL, with X-Linked-Size and X-Linked-Etag"}}


def hf_adapter(session: Session, principal, ns: str, name: str, level: str = "read") -> tuple[Namespace, Adapter]:
    """The repo, or ``RepoNotFound``: HF clients understand that, not our 422 for a malformed name."""
    try:
        nsrow, adapter = get_adapter(session, principal, ns, name)
    except InvalidReferenceError as exc:
        raise ApiError(404, "RepoNotFound", str(exc)) from None
    if level != "read":
        require(principal, level, nsrow)
    return nsrow, adapter


def empty_commit(ns: str, name: str) -> str:
    """The commit id ``main`` has before the first version (a repo made by ``create_repo``)."""
    return hashlib.sha1(f"adapterhub-empty:{ns}/{name}".encode()).hexdigest()


def _target(session: Session, principal, ns: str, name: str, rev: str) -> tuple[Namespace, Adapter, Version | None]:
    """The version ``rev`` names; None for ``main`` of a repo with no version yet, which (as on the
    Hub, where a new repo's main is an empty commit) lists no files rather than missing."""
    nsrow, adapter = hf_adapter(session, principal, ns, name)
    if rev in ("", DEFAULT_REVISION) and session.exec(select(Version.id).where(Version.adapter_id == adapter.id)).first() is None:
        return nsrow, adapter, None
    return nsrow, adapter, resolve_revision(session, adapter, rev)


def hf_time(dt) -> str:
    """The Hub's timestamp form, ``2024-01-31T12:00:00.000Z`` (its client parses only this)."""
    return aware(dt).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{aware(dt).microsecond // 1000:03d}Z"


def library_of(adapter: Adapter, v: Version | None, files: list[File] | None = None) -> str:
    """The Hub's ``library_name``: ``adapter-transformers`` for a version ``adapters`` wrote (its
    config, or a fusion's or setup's files at the top), else ``peft``; the adapter's tag before any version."""
    if v is None:
        return library_of_tags(adapter.tags)
    return af.LIBRARY if af.is_adapters_folder(v.config, tuple(f.path for f in files or ())) else PEFT_LIBRARY


def hf_tags(adapter_tags: list[str] | None, library: str) -> list[str]:
    """A repo's tags as the Hub lists them: its own, its library's, ours."""
    tags = list(adapter_tags or [])
    return tags + ([] if library in tags else [library]) + ["adapterhub"]  # hf_repos.OUR_TAG


def card_data(adapter: Adapter, v: Version, library: str = PEFT_LIBRARY) -> dict:
    """The card as the Hub's clients read it: ``base_model`` a Hub id string (HF_PROTOCOL.md), never
    the ``{"id", "fingerprint"}`` object our own card may hold."""
    card = {"base_model": adapter.base_model or None, "license": adapter.license or None, "library_name": library,
            **(v.card or {})}
    base = card.get("base_model")
    if isinstance(base, dict):
        named = base.get("id") or base.get("name_or_path") or base.get("name")
        card["base_model"] = named if isinstance(named, str) else adapter.base_model or None
    elif base is not None and not isinstance(base, str | list):
        card["base_model"] = adapter.base_model or None
    return card


def _info(session: Session, nsrow: Namespace, adapter: Adapter, v: Version | None) -> dict:
    if v is None:
        return {"_id": f"{nsrow.name}/{adapter.name}", "id": f"{nsrow.name}/{adapter.name}",
                "modelId": f"{nsrow.name}/{adapter.name}", "author": nsrow.name,
                "sha": empty_commit(nsrow.name, adapter.name), "private": nsrow.private, "disabled": False,
                "gated": False, "tags": [library_of(adapter, None), "adapterhub"],
                "library_name": library_of(adapter, None), "downloads": 0,
                "lastModified": hf_time(adapter.created_at), "createdAt": hf_time(adapter.created_at),
                "cardData": {}, "siblings": [], "usedStorage": 0, "version": None}
    files = files_of(session, v.id)
    library = library_of(adapter, v, files)
    return {
        "_id": f"{nsrow.name}/{adapter.name}", "id": f"{nsrow.name}/{adapter.name}",
        "modelId": f"{nsrow.name}/{adapter.name}", "author": nsrow.name, "sha": v.commit,
        "private": nsrow.private, "disabled": False, "gated": False,
        "tags": hf_tags(adapter.tags, library), "library_name": library,
        "pipeline_tag": adapter.task or None, "downloads": adapter.downloads,
        "lastModified": hf_time(v.created_at), "createdAt": hf_time(adapter.created_at),
        "cardData": card_data(adapter, v, library),
        "siblings": [{"rfilename": f.path, "size": f.size} for f in files],
        "usedStorage": v.size, "version": v.version,
    }


@api.get("")
def model_info(ns: str, name: str, session: SessionDep, principal: HfPrincipalDep) -> dict:
    if (base := mirrored_base(session, ns, name)) is not None:
        return base_info(session, base, hf_time)
    return _info(session, *_target(session, principal, ns, name, "main"))


@api.get("/revision/{rev:path}")  # HF clients send a revision with '/' (refs/pr/1) %2F-encoded
def model_info_revision(ns: str, name: str, rev: str, session: SessionDep, principal: HfPrincipalDep) -> dict:
    if (base := mirrored_base(session, ns, name, rev)) is not None:
        return base_info(session, base, hf_time)
    return _info(session, *_target(session, principal, ns, name, rev))


def _tree(files: list[File], prefix: str, recursive: bool) -> list[dict]:
    """Folders first (in order of first appearance), then files. ``dirs`` is a dict (an ordered set),
    not a list searched with ``in``: 1000 files 500 levels deep are 500k folders, and the list made
    the listing quadratic. The folders seen are closed under parent, so each file adds only the
    tail of its ancestors below the deepest one seen: work in proportion to the output."""
    base = prefix.strip("/")
    base = base + "/" if base else ""
    out: list[dict] = []
    dirs: dict[str, None] = {}
    for f in files:
        if not f.path.startswith(base):
            continue
        rest = f.path[len(base):]
        if not recursive and "/" in rest:
            dirs.setdefault(base + rest.split("/", 1)[0])
            continue
        if recursive:
            new: list[str] = []
            cut = f.path.rfind("/")
            while cut >= len(base) and f.path[:cut] not in dirs:
                new.append(f.path[:cut])
                cut = f.path.rfind("/", 0, cut)
            dirs.update(dict.fromkeys(reversed(new)))
        out.append({"type": "file", "path": f.path, "size": f.size, "oid": f.sha256,
                    "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 0}})
    return [{"type": "directory", "path": d, "size": 0, "oid": ""} for d in dirs] + out


@api.get("/tree/{rev}")
@api.get("/tree/{rev}/{path:path}")
def tree(ns: str, name: str, rev: str, session: SessionDep, principal: HfPrincipalDep, path: str = "",
         recursive: str = "false") -> list[dict]:
    if (base := mirrored_base(session, ns, name, rev)) is not None:
        return _tree(files_of_base(session, base.id), path, recursive.lower() in ("true", "1", "yes"))
    _nsrow, _adapter, v = _target(session, principal, ns, name, rev)
    if v is None:
        if path:
            raise ApiError(404, "EntryNotFound", f"no path {path!r}: {ns}/{name} has no version yet",
                           {"X-Repo-Commit": empty_commit(ns, name)})
        return []
    files = files_of(session, v.id)
    entries = _tree(files, path, recursive.lower() in ("true", "1", "yes"))
    if path and not entries:
        raise ApiError(404, "EntryNotFound", f"no path {path!r} in version {v.version}", {"X-Repo-Commit": v.commit})
    return entries


# HEAD registered explicitly (HF_PROTOCOL.md), as its own route so that it has its own operationId
@router.get("/{ns}/{name}/resolve/{rev}/{path:path}", response_class=Response, responses=RESOLVE_RESPONSES)
@router.head("/{ns}/{name}/resolve/{rev}/{path:path}", response_class=Response, responses=RESOLVE_RESPONSES)
def resolve_file(ns: str, name: str, rev: str, path: str, request: Request, session: SessionDep,
                 principal: HfPrincipalDep, store: StoreDep) -> Response:
    if (base := mirrored_base(session, ns, name, rev)) is not None:
        return resolve_base_file(request, session, store, base, path)
    _nsrow, _adapter, v = _target(session, principal, ns, name, rev)
    if v is None:  # push_to_hub reads the old card first: none yet must read as a missing file
        raise ApiError(404, "EntryNotFound", f"{ns}/{name} has no version yet, so no file {path!r}",
                       {"X-Repo-Commit": empty_commit(ns, name)})
    headers = {"X-Repo-Commit": v.commit}
    url = None
    f = next((f for f in files_of(session, v.id) if f.path == path), None)
    if f is not None:
        url = store.presigned_url(f.sha256, f.path)
    if url is not None:
        return RedirectResponse(url, status_code=302, headers={
            **headers, "X-Linked-Size": str(f.size), "X-Linked-Etag": f'"{f.sha256}"', "ETag": f'"{f.sha256}"'})
    return file_response(request, session, store, v, path, headers)
