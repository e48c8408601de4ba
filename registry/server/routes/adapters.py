"""Adapters: search/list, create, read, update, resolve a reference, audit log."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlmodel import select

from adapterhub.registry.reference import (
    COMMIT_RE,
    DEFAULT_REVISION,
    SEMVER_RE,
    check_alias,
    check_name,
    check_version,
)
from adapterhub.registry.server.auth import aware
from adapterhub.registry.server.canary import arm_for
from adapterhub.registry.server.crud import audit, get_adapter, require, resolve_revision, summaries
from adapterhub.registry.server.deps import CurrentUser, PrincipalDep, RolloutCacheDep, SessionDep
from adapterhub.registry.server.errors import ApiError, error_responses, not_found
from adapterhub.registry.server.models import Adapter, AuditLog, Namespace
from adapterhub.registry.server.schemas import (
    AdapterCreate,
    AdapterPage,
    AdapterSummary,
    AdapterUpdate,
    AuditEntry,
    ResolveOut,
)
from adapterhub.registry.server.search import search

router = APIRouter(prefix="/adapters", tags=["adapters"], responses=error_responses(401, 404, 422, 429, 503))


def _tags(tags: list[str]) -> tuple[list[str], str]:
    clean = []
    for t in tags:
        t = t.strip()
        if not t or "," in t or len(t) > 64:
            raise ApiError(422, "InvalidRequest", f"bad tag {t!r}: 1-64 characters, no commas")
        if t not in clean:
            clean.append(t)
    return clean, "," + ",".join(clean) + "," if clean else ""


@router.get("", response_model=AdapterPage)
def list_adapters(
    session: SessionDep, principal: PrincipalDep, q: str = "", base_model: str = "", method: str = "",
    task: str = "", tag: str = "", namespace: str = "", library: str = "", sort: str = "newest",
    limit: int = Query(20, ge=1, le=200), cursor: str | None = None,
) -> AdapterPage:
    return search(session, principal, q=q, base_model=base_model, method=method, task=task, tag=tag,
                  namespace=namespace, library=library, sort=sort, limit=limit, cursor=cursor)


@router.post("", response_model=AdapterSummary, status_code=201, responses=error_responses(403, 409))
def create_adapter(body: AdapterCreate, session: SessionDep, principal: CurrentUser) -> AdapterSummary:
    check_name(body.namespace, "namespace")
    check_name(body.name, "adapter name")
    ns = session.exec(select(Namespace).where(Namespace.name == body.namespace)).first()
    if ns is None:
        raise not_found(f"namespace {body.namespace!r}")
    require(principal, "write", ns)
    if session.exec(select(Adapter).where(Adapter.namespace_id == ns.id, Adapter.name == body.name)).first():
        raise ApiError(409, "AdapterExists", f"adapter {body.namespace}/{body.name} exists")
    tags, tags_text = _tags(body.tags)
    adapter = Adapter(namespace_id=ns.id, name=body.name, description=body.description, task=body.task,
                      method=body.method, base_model=body.base_model, tags=tags, tags_text=tags_text,
                      license=body.license)
    session.add(adapter)
    session.flush()
    audit(session, principal.name, "adapter.create", ns.name, adapter.id, name=body.name)
    session.commit()
    return summaries(session, [(adapter, ns)])[0]


@router.get("/{ns}/{name}", response_model=AdapterSummary)
def read_adapter(ns: str, name: str, session: SessionDep, principal: PrincipalDep) -> AdapterSummary:
    nsrow, adapter = get_adapter(session, principal, ns, name)
    return summaries(session, [(adapter, nsrow)])[0]


@router.patch("/{ns}/{name}", response_model=AdapterSummary, responses=error_responses(403))
def update_adapter(ns: str, name: str, body: AdapterUpdate, session: SessionDep,
                   principal: CurrentUser) -> AdapterSummary:
    nsrow, adapter = get_adapter(session, principal, ns, name)
    require(principal, "write", nsrow)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "tags" in changes:
        changes["tags"], adapter.tags_text = _tags(changes["tags"])
    for key, value in changes.items():
        setattr(adapter, key, value)
    session.add(adapter)
    audit(session, principal.name, "adapter.update", ns, adapter.id, **changes)
    session.commit()
    return summaries(session, [(adapter, nsrow)])[0]


@router.get("/{ns}/{name}/resolve", response_model=ResolveOut)
def resolve(ns: str, name: str, session: SessionDep, principal: PrincipalDep, cache: RolloutCacheDep,
            ref: str = "", key: str | None = None) -> ResolveOut:
    """``ref`` is ``""`` (stable, else newest), ``@1.2.0`` or ``:alias``; on an alias with an open
    rollout, ``key`` picks the sticky arm (no key: stable)."""
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    rev = ref[1:] if ref[:1] in ("@", ":") else ref
    if ref.startswith("@") and not rev:
        raise ApiError(422, "InvalidName", "empty version after '@'")
    if ref.startswith("@"):
        check_version(rev)
    elif ref.startswith(":") and rev != DEFAULT_REVISION:  # ":main" reads as "", as `parse_reference` has it
        check_alias(rev)
    alias = _alias_of(ref, rev)
    live = cache.get(session, adapter.id, alias) if alias else None
    if live is not None:
        arm = arm_for(live.id, live.weight, key)
        version, commit = ((live.canary_version, live.canary_commit) if arm == "canary"
                           else (live.stable_version, live.stable_commit))
        return ResolveOut(namespace=ns, name=name, version=version, commit=commit, arm=arm, rollout_id=live.id)
    v = resolve_revision(session, adapter, rev)
    return ResolveOut(namespace=ns, name=name, version=v.version, commit=v.commit)


def _alias_of(ref: str, rev: str) -> str | None:
    """The alias a ``ref`` names (``""``/``main`` name ``stable``), or None for a version or commit."""
    if ref.startswith("@") or SEMVER_RE.fullmatch(rev) or COMMIT_RE.fullmatch(rev):
        return None
    return "stable" if rev in ("", DEFAULT_REVISION) else rev


@router.get("/{ns}/{name}/audit", response_model=list[AuditEntry])
def read_audit(ns: str, name: str, session: SessionDep, principal: PrincipalDep) -> list[AuditEntry]:
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    rows = session.exec(select(AuditLog).where(AuditLog.adapter_id == adapter.id).order_by(AuditLog.id)).all()
    return [AuditEntry(id=r.id, at=aware(r.at), actor=r.actor, action=r.action, details=r.details) for r in rows]
