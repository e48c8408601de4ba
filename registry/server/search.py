"""Search and list adapters: only what the caller may read, filters in SQL, cursor pagination.

The cursor is the offset of the next page, opaque to clients.
"""

from __future__ import annotations

from sqlalchemy import false, func, or_
from sqlmodel import Session, select

from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.crud import best_metrics, summaries
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.models import Adapter, Evaluation, Namespace, Version
from adapterhub.registry.server.schemas import AdapterPage


def _visible(principal: Principal):
    if principal.superuser or (principal.user is not None and principal.user.is_admin and "*" in principal.namespaces):
        return None
    conds = [Namespace.private == false()]
    if principal.user is not None:
        explicit = [n for n in principal.namespaces if n != "*"]
        if explicit:
            conds.append(Namespace.name.in_(explicit))
        if "*" in principal.namespaces:
            conds.append(Namespace.owner_id == principal.user.id)
    return or_(*conds)


def search(session: Session, principal: Principal, *, q: str = "", base_model: str = "", method: str = "",
           task: str = "", tag: str = "", namespace: str = "", sort: str = "newest", limit: int = 20,
           cursor: str | None = None) -> AdapterPage:
    stmt = select(Adapter, Namespace).join(Namespace, Adapter.namespace_id == Namespace.id)
    visible = _visible(principal)
    if visible is not None:
        stmt = stmt.where(visible)
    for word in q.lower().split():
        stmt = stmt.where(or_(
            Namespace.name.contains(word, autoescape=True), Adapter.name.contains(word, autoescape=True),
            func.lower(Adapter.description).contains(word, autoescape=True),
            func.lower(Adapter.tags_text).contains(word, autoescape=True),
        ))
    for col, value in ((Adapter.base_model, base_model), (Adapter.method, method), (Adapter.task, task),
                       (Namespace.name, namespace)):
        if value:
            stmt = stmt.where(col == value)
    if tag:
        stmt = stmt.where(Adapter.tags_text.contains(f",{tag},", autoescape=True))
    try:
        offset = int(cursor) if cursor else 0
    except ValueError:
        raise ApiError(422, "InvalidRequest", f"bad cursor {cursor!r}") from None
    if sort == "newest":
        stmt = stmt.order_by(Adapter.created_at.desc(), Adapter.id.desc())
    elif sort == "downloads":
        stmt = stmt.order_by(Adapter.downloads.desc(), Adapter.id.desc())
    elif sort.startswith("metric:") and len(sort) > 7:
        return _by_metric(session, list(session.exec(stmt).all()), sort[7:], offset, limit)
    else:
        raise ApiError(422, "InvalidRequest", f"bad sort {sort!r}: use newest, downloads or metric:<name>")
    rows = list(session.exec(stmt.offset(offset).limit(limit + 1)).all())
    more = len(rows) > limit
    return AdapterPage(items=summaries(session, rows[:limit]), next_cursor=str(offset + limit) if more else None)


def _by_metric(session: Session, rows: list, metric: str, offset: int, limit: int) -> AdapterPage:
    latest = {a.id: a.latest_version for a, _ in rows if a.latest_version}
    evals: dict[int, list] = {}
    if latest:
        for ev, aid, ver in session.exec(
            select(Evaluation, Version.adapter_id, Version.version).join(
                Version, Evaluation.version_id == Version.id).where(Version.adapter_id.in_(list(latest)))
        ).all():
            if latest.get(aid) == ver:
                evals.setdefault(aid, []).append(ev)
    scored = [(best_metrics(evals.get(a.id, [])).get(metric), a, ns) for a, ns in rows]
    scored.sort(key=lambda t: (t[0] is None, -(t[0] or 0.0), -t[1].id))
    page = [(a, ns) for _, a, ns in scored[offset:offset + limit]]
    more = len(scored) > offset + limit
    return AdapterPage(items=summaries(session, page), next_cursor=str(offset + limit) if more else None)
