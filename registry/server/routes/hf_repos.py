"""The Hugging Face Hub's account and repo routes (HF_PROTOCOL.md, the write half): who am I,
create a repo, check a card, list and search, branches, tags and refs.

A repo is an adapter; a branch is an alias that commits move; a tag is an alias that never moves;
every version is also a tag of its own name. ``main`` reads the ``stable`` alias, else the newest.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlmodel import Session, select

from adapterhub.errors import InvalidReferenceError
from adapterhub.registry.reference import DEFAULT_REVISION, check_alias, check_name
from adapterhub.registry.server.card_meta import CardError, card_problems, front_matter
from adapterhub.registry.server.crud import (
    audit,
    delete_alias,
    require,
    resolve_revision,
    set_alias,
    versions_newest_first,
)
from adapterhub.registry.server.deps import CurrentUser, HfPrincipalDep, SessionDep
from adapterhub.registry.server.errors import ApiError, error_responses, header_safe
from adapterhub.registry.server.models import Adapter, Alias, Namespace, Version
from adapterhub.registry.server.rollouts import guard_alias
from adapterhub.registry.server.routes.hf import hf_adapter, hf_tags, hf_time
from adapterhub.registry.server.search import LIBRARIES, library_of_tags, search

router = APIRouter(tags=["huggingface"], responses=error_responses(400, 401, 403, 404, 409, 422, 503))
JsonBody = Annotated[dict[str, Any], Body()]
LIST_PAGE = 1000  # list_models without a limit follows the Link header page by page
OUR_TAG = "adapterhub"  # a tag every repo carries in its info, with its library's (`hf.hf_tags`)


def endpoint(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _bad(message: str, code: str = "BadRequest") -> ApiError:
    return ApiError(400, code, message)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"the {what} must be a string, not {value!r}", "InvalidRepoName")
    try:
        return check_name(value, what)
    except InvalidReferenceError as exc:
        raise _bad(str(exc), "InvalidRepoName") from None


@router.get("/api/whoami-v2")
def whoami_v2(session: SessionDep, principal: CurrentUser) -> dict:
    """What ``HfApi.whoami`` reads: the user, the namespaces beyond their own (as orgs), the token's role."""
    own = principal.name
    if "*" in principal.namespaces:
        rows = session.exec(select(Namespace.name).order_by(Namespace.name).limit(200) if principal.superuser else
                            select(Namespace.name).where(Namespace.owner_id == principal.user.id)).all()
        names = [n for n in rows if n != own]
    else:
        names = [n for n in principal.namespaces if n != own]
    tok = principal.token
    return {
        "type": "user", "id": str(principal.user.id) if principal.user else "0", "name": own, "fullname": own,
        "email": None, "emailVerified": False, "isPro": False, "canPay": False,
        "orgs": [{"type": "org", "name": n, "fullname": n} for n in names],
        "auth": {"type": "access_token", "accessToken": {
            "displayName": (tok.name if tok and tok.name else "admin token" if principal.superuser else "token"),
            "role": "write" if principal.has_scope("write") else "read",
            "createdAt": hf_time(tok.created_at) if tok else None}},
    }


def _visibility(body: dict) -> str | None:
    visibility = body.get("visibility")
    if visibility is None and isinstance(body.get("private"), bool):  # clients before 1.0 send "private"
        visibility = "private" if body["private"] else "public"
    if visibility not in (None, "public", "private"):
        raise _bad(f"visibility must be 'public' or 'private', not {visibility!r}")
    return visibility


@router.post("/api/repos/create")
def create_repo(body: JsonBody, request: Request, session: SessionDep, principal: CurrentUser) -> JSONResponse:
    """An adapter with no version yet. Privacy belongs to the namespace here, so a repo asked to be
    private in a public namespace (or public in a private one) is refused rather than quietly made
    otherwise."""
    if body.get("type") not in (None, "model"):
        raise _bad(f"this registry holds models (adapters) only, not {body['type']}s", "RepoTypeUnsupported")
    name = _name(body.get("name"), "adapter name")
    owner = body.get("organization") or principal.name
    ns_name = _name(owner, "namespace")
    ns = session.exec(select(Namespace).where(Namespace.name == ns_name)).first()
    if ns is None or not principal.can_read(ns):
        raise ApiError(404, "RepoNotFound", f"namespace {ns_name!r} not found (or you may not read it): an admin "
                                            f"creates it with `adapterhub namespace create {ns_name}`")
    require(principal, "write", ns)
    visibility = _visibility(body)
    if visibility is not None and (visibility == "private") != ns.private:
        kind = "private" if ns.private else "public"
        raise _bad(f"namespace {ns_name!r} is {kind}, and here privacy belongs to the namespace: push a "
                   f"{visibility} adapter to a {visibility} namespace (`adapterhub namespace create NAME"
                   f"{' --private' if visibility == 'private' else ''}`)", "VisibilityMismatch")
    url = f"{endpoint(request)}/{ns_name}/{name}"
    if session.exec(select(Adapter.id).where(Adapter.namespace_id == ns.id, Adapter.name == name)).first():
        message = f"repo {ns_name}/{name} exists"  # create_repo(exist_ok=True) reads the url from this 409
        return JSONResponse({"error": message, "url": url, "detail": message, "code": "RepoExists"}, status_code=409,
                            headers={"X-Error-Code": "RepoExists", "X-Error-Message": header_safe(message)})
    adapter = Adapter(namespace_id=ns.id, name=name)
    session.add(adapter)
    session.flush()
    audit(session, principal.name, "adapter.create", ns.name, adapter.id, name=name, via="huggingface")
    session.commit()
    return JSONResponse({"url": url, "name": f"{ns_name}/{name}", "id": str(adapter.id)})


def _card_verdict(problems: list[str]) -> JSONResponse:
    if not problems:
        return JSONResponse({"errors": [], "warnings": []})
    detail = "; ".join(problems)  # the error shape every route answers, plus the Hub's "errors" list
    return JSONResponse({"errors": [{"message": p} for p in problems], "warnings": [], "detail": detail,
                         "code": "InvalidCard"}, status_code=400,
                        headers={"X-Error-Code": "InvalidCard", "X-Error-Message": header_safe(detail)})


@router.post("/api/validate-yaml")
def validate_yaml(body: JsonBody) -> JSONResponse:
    """The client reads this body before the status, so every answer is JSON with ``errors``."""
    content = body.get("content")
    if not isinstance(content, str):
        return _card_verdict(["content must be the model card's text"])
    try:
        return _card_verdict(card_problems(front_matter(content)))
    except CardError as exc:
        return _card_verdict([str(exc)])


def _model_entry(item) -> dict:
    repo = f"{item.namespace}/{item.name}"
    library = library_of_tags(item.tags)
    return {"_id": repo, "id": repo, "modelId": repo, "author": item.namespace, "private": item.private,
            "tags": hf_tags(item.tags, library), "library_name": library, "pipeline_tag": item.task or None,
            "downloads": item.downloads, "likes": 0, "createdAt": hf_time(item.created_at),
            "lastModified": hf_time(item.created_at), "version": item.latest_version}


def _library_name(tag: str) -> str:
    """``library:peft`` reads as ``peft``; any other filter as it is."""
    bare = tag.removeprefix("library:")
    return bare if bare in LIBRARIES else tag


@router.get("/api/models")
def list_models(request: Request, session: SessionDep, principal: HfPrincipalDep, search_text: str = Query("", alias="search"),
                author: str = "", filter: Annotated[list[str] | None, Query()] = None, sort: str = "",
                limit: int | None = Query(None, ge=1), cursor: str | None = None) -> JSONResponse:
    """``HfApi.list_models``: our search under the Hub's parameter names; pages by ``Link`` when no limit is set.
    A library (``peft``, ``adapter-transformers``; ``library:``-prefixed too, what ``list_models(library=)``
    of older clients sends as a filter) selects the adapters that library loads."""
    wanted = [_library_name(t) for t in filter or [] if t != OUR_TAG]
    libraries = sorted({LIBRARIES[t] for t in wanted if t in LIBRARIES})
    if len(libraries) > 1:  # no adapter is both
        return JSONResponse([])
    tags = [t for t in wanted if t not in LIBRARIES]
    task = next((t for t in tags if t in ("text-classification", "text-generation")), "")
    tags = [t for t in tags if t != task]
    if len(tags) > 1:
        raise ApiError(422, "InvalidRequest", f"filter by one tag at a time (got {tags})")
    order = {"": "newest", "createdAt": "newest", "lastModified": "newest", "created_at": "newest",
             "last_modified": "newest", "downloads": "downloads"}.get(sort)
    if order is None:
        raise ApiError(422, "InvalidRequest", f"bad sort {sort!r}: use downloads, createdAt or lastModified")
    page = search(session, principal, q=search_text, namespace=author, tag=tags[0] if tags else "", task=task,
                  library=libraries[0] if libraries else "", sort=order, limit=min(limit or LIST_PAGE, LIST_PAGE),
                  cursor=cursor)
    headers = {}
    if page.next_cursor and limit is None:
        nxt = request.url.include_query_params(cursor=page.next_cursor)
        headers["Link"] = f'<{nxt}>; rel="next"'
    return JSONResponse([_model_entry(i) for i in page.items], headers=headers)


def _ref(name: str, kind: str, commit: str) -> dict:
    return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": commit}


@router.get("/api/models/{ns}/{name}/refs")
def list_refs(ns: str, name: str, session: SessionDep, principal: HfPrincipalDep, include_prs: bool = False) -> dict:
    """Branches: ``main`` and the aliases; tags: the tag aliases and every version."""
    _nsrow, adapter = hf_adapter(session, principal, ns, name)
    versions = versions_newest_first(session, adapter.id)
    branches, tags = [], []
    if versions:
        try:
            branches.append(_ref(DEFAULT_REVISION, "heads", resolve_revision(session, adapter, DEFAULT_REVISION).commit))
        except ApiError:  # every version yanked: main reads nothing
            pass
    by_id = {v.id: v for v in versions}
    for alias in session.exec(select(Alias).where(Alias.adapter_id == adapter.id).order_by(Alias.name)).all():
        (tags if alias.is_tag else branches).append(_ref(alias.name, "tags" if alias.is_tag else "heads",
                                                         by_id[alias.version_id].commit))
    tags += [_ref(v.version, "tags", v.commit) for v in versions]
    return {"branches": branches, "converts": [], "tags": tags, **({"pullRequests": []} if include_prs else {})}


def _alias_name(value: str, what: str) -> str:
    try:
        return check_alias(value)
    except InvalidReferenceError as exc:
        raise _bad(str(exc).replace("alias", what, 1), "InvalidRevision") from None


def _new_alias(session: Session, principal, nsrow: Namespace, adapter: Adapter, name: str, v: Version,
               is_tag: bool) -> None:
    if session.exec(select(Alias.id).where(Alias.adapter_id == adapter.id, Alias.name == name)).first():
        raise ApiError(409, "RefExists", f"{'tag' if is_tag else 'branch'} {name!r} exists")
    set_alias(session, principal.name, nsrow, adapter, name, v)  # the history and audit rows of any alias
    if is_tag:
        session.exec(select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == name)).one().is_tag = True
    session.commit()


@router.post("/api/models/{ns}/{name}/branch/{branch:path}")  # a "/" reaches the name check
def create_branch(ns: str, name: str, branch: str, session: SessionDep, principal: CurrentUser,
                  body: Annotated[dict[str, Any] | None, Body()] = None) -> Response:
    """A branch is an alias: it starts at ``startingPoint`` (default ``main``), and commits to it move it."""
    nsrow, adapter = hf_adapter(session, principal, ns, name, "write")
    branch = _alias_name(branch, "branch")
    body = body or {}
    if body.get("emptyBranch"):
        raise _bad("an empty branch has nothing to point at here: a branch is an alias of a version")
    start = str(body.get("startingPoint") or DEFAULT_REVISION)
    if not versions_newest_first(session, adapter.id):
        raise ApiError(409, "EmptyRepo", f"{ns}/{name} has no version yet to branch from: commit to main first")
    _new_alias(session, principal, nsrow, adapter, branch, resolve_revision(session, adapter, start), False)
    return Response(status_code=200)


@router.post("/api/models/{ns}/{name}/tag/{rev}")
def create_tag(ns: str, name: str, rev: str, body: JsonBody, session: SessionDep, principal: CurrentUser) -> Response:
    """A tag is an alias that never moves (`crud.set_alias` refuses to)."""
    nsrow, adapter = hf_adapter(session, principal, ns, name, "write")
    if not isinstance(body.get("tag"), str):
        raise _bad(f'the body needs "tag", a string; got {body.get("tag")!r}', "InvalidRevision")
    tag = _alias_name(body["tag"], "tag")
    _new_alias(session, principal, nsrow, adapter, tag, resolve_revision(session, adapter, rev), True)
    return Response(status_code=200)


def _drop(ns: str, name: str, ref: str, session: Session, principal, is_tag: bool) -> Response:
    nsrow, adapter = hf_adapter(session, principal, ns, name, "write")
    row = session.exec(select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == ref)).first()
    if row is None or row.is_tag != is_tag:
        raise ApiError(404, "RevisionNotFound", f"no {'tag' if is_tag else 'branch'} {ref!r}")
    guard_alias(session, adapter.id, ref)
    delete_alias(session, principal.name, nsrow, adapter, ref)
    session.commit()
    return Response(status_code=200)


@router.delete("/api/models/{ns}/{name}/branch/{branch:path}")
def delete_branch(ns: str, name: str, branch: str, session: SessionDep, principal: CurrentUser) -> Response:
    return _drop(ns, name, branch, session, principal, False)


@router.delete("/api/models/{ns}/{name}/tag/{tag}")
def delete_tag(ns: str, name: str, tag: str, session: SessionDep, principal: CurrentUser) -> Response:
    return _drop(ns, name, tag, session, principal, True)
