"""Search and list adapters: only what the caller may read, filters in SQL, cursor pagination.

The cursor is the offset of the next page, opaque to clients.
"""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlmodel import Session, select

from adapterhub import adapters_folder as af
from adapterhub.registry.server.auth import Principal
from adapterhub.registry.server.bases import base_names
from adapterhub.registry.server.crud import best_metrics, latest_metrics, readable_filter, summaries
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.models import Adapter, Namespace
from adapterhub.registry.server.schemas import AdapterPage

MAX_OFFSET = 2**63 - 1
# Each word is an OR of four LIKEs: bounded before the database sees it (past ~1000 words SQLite
# refuses the expression, which read as an outage), and far above what a person types.
MAX_QUERY_WORDS = 32
MAX_QUERY_CHARS = 512
# The library that loads an adapter, as the Hub names it: AdapterHub's ``adapters`` folders carry
# its tag (`publish.library_fields`), every other adapter is PEFT's format (ours included).
PEFT_LIBRARY = "peft"
LIBRARIES = {PEFT_LIBRARY: PEFT_LIBRARY, **{name: af.LIBRARY for name in af.LIBRARY_NAMES}}
_LIBRARY_TAG = f",{af.LIBRARY},"


def library_of_tags(tags: list[str] | None) -> str:
    """The Hub's ``library_name`` of an adapter with these tags."""
    return af.LIBRARY if af.LIBRARY in (tags or []) else PEFT_LIBRARY


# What a summary reads, as plain columns: rows, not ORM objects (no identity map, no instrumentation).
_COLUMNS = (Adapter.id, Adapter.name, Adapter.description, Adapter.task, Adapter.method, Adapter.base_model,
            Adapter.tags, Adapter.license, Adapter.created_at, Adapter.latest_version, Adapter.latest_size,
            Adapter.downloads, Namespace.name.label("ns_name"), Namespace.private.label("ns_private"))


# Built once: statements are immutable, ``.where()`` returns a copy (saves re-coercing 14 columns a request).
_BASE = select(*_COLUMNS).join(Namespace, Adapter.namespace_id == Namespace.id)


class _Ns:
    """The namespace fields a summary reads."""

    __slots__ = ("name", "private")

    def __init__(self, name: str, private: bool):
        self.name, self.private = name, private


def _pairs(rows) -> list:
    """(adapter, namespace) pairs for `summaries` from `_COLUMNS` rows."""
    return [(r, _Ns(r.ns_name, r.ns_private)) for r in rows]


def search(session: Session, principal: Principal, *, q: str = "", base_model: str = "", method: str = "",
           task: str = "", tag: str = "", namespace: str = "", library: str = "", sort: str = "newest",
           limit: int = 20, cursor: str | None = None) -> AdapterPage:
    words = q.lower().split()
    if len(q) > MAX_QUERY_CHARS or len(words) > MAX_QUERY_WORDS:
        raise ApiError(422, "InvalidRequest", f"search text too long: {len(words)} words, {len(q)} characters "
                                              f"(at most {MAX_QUERY_WORDS} words and {MAX_QUERY_CHARS} characters)")
    filters = {"base_model": base_model, "method": method, "task": task, "tag": tag, "namespace": namespace,
               "library": library}
    for key, value in filters.items():
        if len(value) > MAX_QUERY_CHARS:  # no stored value is this long; SQLite refuses a LIKE past 50,000 bytes
            raise ApiError(422, "InvalidRequest", f"filter {key} is {len(value)} characters; at most {MAX_QUERY_CHARS}")
    stmt = _BASE
    visible = readable_filter(principal)
    if visible is not None:
        stmt = stmt.where(visible)
    for word in words:
        stmt = stmt.where(or_(
            Namespace.name.contains(word, autoescape=True), Adapter.name.contains(word, autoescape=True),
            func.lower(Adapter.description).contains(word, autoescape=True),
            func.lower(Adapter.tags_text).contains(word, autoescape=True),
        ))
    if base_model:  # a registered base's id and its aliases find the same adapters
        names = base_names(session, base_model)
        stmt = stmt.where(Adapter.base_model == names[0] if len(names) == 1 else Adapter.base_model.in_(names))
    for col, value in ((Adapter.method, method), (Adapter.task, task), (Namespace.name, namespace)):
        if value:
            stmt = stmt.where(col == value)
    if tag:
        stmt = stmt.where(Adapter.tags_text.contains(f",{tag},", autoescape=True))
    if library:
        if library not in LIBRARIES:
            raise ApiError(422, "InvalidRequest", f"bad library {library[:100]!r}: use {', '.join(LIBRARIES)}")
        tagged = Adapter.tags_text.contains(_LIBRARY_TAG, autoescape=True)
        stmt = stmt.where(tagged if LIBRARIES[library] == af.LIBRARY else ~tagged)
    try:
        offset = int(cursor) if cursor else 0
    except ValueError:
        offset = -1
    if not 0 <= offset <= MAX_OFFSET:  # the databases refuse a negative or over-64-bit OFFSET
        raise ApiError(422, "InvalidRequest", f"bad cursor {cursor!r}")
    if sort == "newest":
        stmt = stmt.order_by(Adapter.created_at.desc(), Adapter.id.desc())
    elif sort == "downloads":
        stmt = stmt.order_by(Adapter.downloads.desc(), Adapter.id.desc())
    elif sort.startswith("metric:") and len(sort) > 7:
        return _by_metric(session, _pairs(session.exec(stmt).all()), sort[7:], offset, limit)
    else:
        raise ApiError(422, "InvalidRequest", f"bad sort {sort!r}: use newest, downloads or metric:<name>")
    rows = session.exec(stmt.offset(offset).limit(limit + 1)).all()
    more = len(rows) > limit
    return AdapterPage(items=summaries(session, _pairs(rows[:limit])),
                       next_cursor=str(offset + limit) if more else None)


def _by_metric(session: Session, rows: list, metric: str, offset: int, limit: int) -> AdapterPage:
    evals = latest_metrics(session, [a.id for a, _ in rows if a.latest_version])
    scored = [(best_metrics(evals.get(a.id, [])).get(metric), a, ns) for a, ns in rows]
    scored.sort(key=lambda t: (t[0] is None, -(t[0] or 0.0), -t[1].id))
    page = [(a, ns) for _, a, ns in scored[offset:offset + limit]]
    more = len(scored) > offset + limit
    return AdapterPage(items=summaries(session, page), next_cursor=str(offset + limit) if more else None)
