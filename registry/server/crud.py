"""Database access shared by the routers: look-ups with visibility, summaries, aliases, audit."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import bindparam, false, or_, update
from sqlmodel import Session, select

from adapterhub.registry.reference import (
    COMMIT_RE,
    DEFAULT_REVISION,
    SEMVER_RE,
    check_alias,
    check_name,
    check_version,
    semver_key,
)
from adapterhub.registry.server.auth import Principal, aware
from adapterhub.registry.server.errors import ApiError, not_found
from adapterhub.registry.server.models import (
    Adapter,
    Alias,
    AliasHistory,
    AuditLog,
    DownloadCount,
    Evaluation,
    File,
    Namespace,
    User,
    Version,
    utcnow,
)
from adapterhub.registry.server.schemas import (
    AdapterSummary,
    AliasHistoryEntry,
    EvaluationOut,
    FileEntry,
    VersionOut,
)


def audit(session: Session, actor: str, action: str, namespace: str = "", adapter_id: int | None = None,
          **details) -> None:
    session.add(AuditLog(actor=actor, action=action, namespace=namespace, adapter_id=adapter_id,
                         details=details))


def get_namespace(session: Session, principal: Principal, name: str) -> Namespace:
    check_name(name, "namespace")
    ns = session.exec(select(Namespace).where(Namespace.name == name)).first()
    if ns is None or not principal.can_read(ns):
        raise not_found(f"namespace {name!r}")
    return ns


def readable_filter(principal: Principal):
    """A WHERE clause on `Namespace` keeping what the caller may read (None: everything), so lists
    and searches filter in SQL with the same rule as `Principal.can_read`."""
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


def get_adapter(session: Session, principal: Principal, ns: str, name: str) -> tuple[Namespace, Adapter]:
    """The adapter if the caller may read it; 404 ``RepoNotFound`` otherwise (no existence leak).
    A name that no adapter can have (upper case, a look-alike letter) is refused as such (422)."""
    check_name(ns, "namespace")
    check_name(name, "adapter name")
    nsrow = session.exec(select(Namespace).where(Namespace.name == ns)).first()
    if nsrow is None or not principal.can_read(nsrow):
        raise not_found(f"adapter {ns}/{name}")
    adapter = session.exec(
        select(Adapter).where(Adapter.namespace_id == nsrow.id, Adapter.name == name)
    ).first()
    if adapter is None:
        raise not_found(f"adapter {ns}/{name}")
    return nsrow, adapter


def require(principal: Principal, level: str, ns: Namespace) -> None:
    """Raise unless the caller holds ``level`` on ``ns`` (404 if they may not even read it)."""
    if principal.can(level, ns):
        return
    if not principal.can_read(ns):
        raise not_found(f"namespace {ns.name!r}")
    if principal.user is None:
        raise ApiError(401, "Unauthorized", f"{level} access to namespace {ns.name!r} needs a token")
    raise ApiError(403, "Forbidden", f"your token has no {level} scope on namespace {ns.name!r}")


def lock_adapter(session: Session, adapter_id: int) -> Adapter:
    """Re-read the adapter row ``FOR UPDATE``: writes to one adapter queue (PostgreSQL)."""
    return session.exec(select(Adapter).where(Adapter.id == adapter_id).with_for_update()).one()


def versions_newest_first(session: Session, adapter_id: int) -> list[Version]:
    rows = session.exec(select(Version).where(Version.adapter_id == adapter_id)).all()
    return sorted(rows, key=lambda v: semver_key(v.version), reverse=True)


def refresh_latest(session: Session, adapter: Adapter) -> None:
    live = [v for v in versions_newest_first(session, adapter.id) if not v.yanked]
    adapter.latest_version = live[0].version if live else None
    adapter.latest_size = live[0].size if live else 0
    session.add(adapter)


def get_version(session: Session, adapter: Adapter, version: str) -> Version:
    check_version(version)
    v = session.exec(select(Version).where(Version.adapter_id == adapter.id, Version.version == version)).first()
    if v is None:
        raise ApiError(404, "RevisionNotFound", f"version {version!r} not found")
    return v


def resolve_revision(session: Session, adapter: Adapter, rev: str) -> Version:
    """A version, an alias, a 40-hex commit, or ``""``/``main`` (``stable``, else the newest).

    Yanked versions follow PEP 592: only an exact pin (a version or a commit) still reaches one.
    ``""``/``main`` pass over a yanked ``stable`` to the newest live version; an alias naming a
    yanked version answers RevisionNotFound, saying so, rather than serving what was withdrawn.
    """
    if "\x00" in rev:  # names nothing, and PostgreSQL would refuse the look-up (HF routes reach here)
        raise ApiError(404, "RevisionNotFound", f"no version or alias {rev!r}")
    if rev in ("", DEFAULT_REVISION):
        alias = session.exec(select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == "stable")).first()
        target = session.get(Version, alias.version_id) if alias is not None else None
        if target is not None and not target.yanked:
            return target
        every = versions_newest_first(session, adapter.id)
        live = [v for v in every if not v.yanked]
        if not live:
            raise ApiError(404, "RevisionNotFound", "every version of the adapter is yanked (pin one to use it)"
                           if every else "the adapter has no published version yet")
        return live[0]
    if SEMVER_RE.fullmatch(rev):
        return get_version(session, adapter, rev)
    if COMMIT_RE.fullmatch(rev):
        v = session.exec(select(Version).where(Version.adapter_id == adapter.id, Version.commit == rev)).first()
        if v is not None:
            return v
    alias = session.exec(select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == rev)).first()
    if alias is None:
        raise ApiError(404, "RevisionNotFound", f"no version or alias {rev!r}")
    v = session.get(Version, alias.version_id)
    if v.yanked:
        raise ApiError(404, "RevisionNotFound", f"alias {rev!r} points at version {v.version}, which is yanked "
                                                f"({v.yank_reason or 'no reason given'}): move the alias, or pin "
                                                f"@{v.version} to use it anyway")
    return v


def refuse_yanked_target(v: Version, alias: str) -> None:
    """An alias is never moved onto a yanked version: it could not resolve (see `resolve_revision`)."""
    if v.yanked:
        raise ApiError(409, "VersionYanked", f"version {v.version} is yanked ({v.yank_reason or 'no reason given'}); "
                                             f"unyank it before pointing {alias!r} at it")


def files_of(session: Session, version_id: int) -> list[File]:
    return list(session.exec(select(File).where(File.version_id == version_id).order_by(File.path)).all())


def evaluation_out(e: Evaluation, version: str) -> EvaluationOut:
    return EvaluationOut(id=e.id, version=version, dataset=e.dataset, dataset_sha256=e.dataset_sha256,
                         metrics=e.metrics, created_by=e.created_by, created_at=aware(e.created_at),
                         protocol=e.protocol, confusion_matrix=e.confusion_matrix, verification=e.verification)


def version_out(session: Session, v: Version) -> VersionOut:
    evals = session.exec(select(Evaluation).where(Evaluation.version_id == v.id).order_by(Evaluation.id)).all()
    return VersionOut(
        version=v.version, commit=v.commit, created_at=aware(v.created_at), created_by=v.created_by,
        yanked=v.yanked, yank_reason=v.yank_reason, size=v.size,
        files=[FileEntry(path=f.path, sha256=f.sha256, size=f.size) for f in files_of(session, v.id)],
        card=v.card, config=v.config, evaluations=[evaluation_out(e, v.version) for e in evals],
        engines=list(v.engines or []), warnings=list(v.warnings or []),
    )


def best_metrics(evals: list[Evaluation] | list[dict]) -> dict:
    """The best (highest) value of each numeric metric over evaluations (rows or their ``metrics``)."""
    best: dict[str, float] = {}
    for e in evals:
        for k, val in ((e if isinstance(e, dict) else e.metrics) or {}).items():
            if isinstance(val, int | float) and (k not in best or val > best[k]):
                best[k] = val
    return best


# Built once (statements are immutable); the id lists bind as one expanding parameter.
_ALIASES_OF = (
    select(Alias.adapter_id, Alias.name, Version.version).join(Version, Alias.version_id == Version.id)
    .where(Alias.adapter_id.in_(bindparam("ids", expanding=True))).order_by(Alias.id)
)
_LATEST_METRICS_OF = (
    select(Version.adapter_id, Evaluation.metrics)
    .join(Version, Evaluation.version_id == Version.id)
    .join(Adapter, Adapter.id == Version.adapter_id)
    .where(Version.adapter_id.in_(bindparam("ids", expanding=True)), Version.version == Adapter.latest_version)
    .order_by(Evaluation.id)
)


def latest_metrics(session: Session, adapter_ids: list[int]) -> dict[int, list[dict]]:
    """adapter id -> the ``metrics`` of each evaluation of its latest version, in one query."""
    out: dict[int, list[dict]] = defaultdict(list)
    if adapter_ids:
        for aid, metrics in session.exec(_LATEST_METRICS_OF, params={"ids": adapter_ids}).all():
            out[aid].append(metrics)
    return out


def summaries(session: Session, rows: list[tuple[Adapter, Namespace]]) -> list[AdapterSummary]:
    """AdapterSummary for many adapters with two extra queries, not two per adapter.

    ``rows`` pairs anything with the attributes read below: ORM rows, or the plain column rows
    that search selects.
    """
    ids = [a.id for a, _ in rows]
    aliases: dict[int, dict[str, str]] = defaultdict(dict)
    metrics: dict[int, list[dict]] = defaultdict(list)
    if ids:
        for aid, alias, ver in session.exec(_ALIASES_OF, params={"ids": ids}).all():
            aliases[aid][alias] = ver
        metrics = latest_metrics(session, [a.id for a, _ in rows if a.latest_version])
    return [
        AdapterSummary(
            namespace=ns.name, name=a.name, description=a.description, task=a.task, method=a.method,
            base_model=a.base_model, tags=list(a.tags or []), license=a.license, private=ns.private,
            created_at=aware(a.created_at), latest_version=a.latest_version, aliases=aliases[a.id],
            downloads=a.downloads, size=a.latest_size, metrics=best_metrics(metrics[a.id]),
        )
        for a, ns in rows
    ]


def set_alias(session: Session, actor: str, ns: Namespace, adapter: Adapter, name: str, v: Version) -> None:
    """Point ``name`` at ``v``; history rows record [from, to) for point-in-time questions."""
    check_alias(name)
    now = utcnow()
    current = session.exec(select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == name)).first()
    if current is not None and current.version_id == v.id:
        return
    if current is not None and current.is_tag:
        raise ApiError(409, "TagImmutable", f"{name!r} is a tag of version {session.get(Version, current.version_id).version}"
                                            "; tags never move (delete it and tag again, or use an alias)")
    previous = session.get(Version, current.version_id).version if current else None
    _close_history(session, adapter.id, name, now)
    session.add(AliasHistory(adapter_id=adapter.id, alias=name, version=v.version, valid_from=now, actor=actor))
    if current is None:
        current = Alias(adapter_id=adapter.id, name=name, version_id=v.id)
    current.version_id, current.updated_at, current.updated_by = v.id, now, actor
    session.add(current)
    audit(session, actor, "alias.set", ns.name, adapter.id, alias=name, version=v.version, previous=previous)


def delete_alias(session: Session, actor: str, ns: Namespace, adapter: Adapter, name: str) -> None:
    current = session.exec(select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == name)).first()
    if current is None:
        raise ApiError(404, "RevisionNotFound", f"no alias {name!r}")
    previous = session.get(Version, current.version_id).version
    _close_history(session, adapter.id, name, utcnow())
    session.delete(current)
    audit(session, actor, "alias.delete", ns.name, adapter.id, alias=name, previous=previous)


def _close_history(session: Session, adapter_id: int, alias: str, now) -> None:
    for h in session.exec(select(AliasHistory).where(
        AliasHistory.adapter_id == adapter_id, AliasHistory.alias == alias, AliasHistory.valid_to.is_(None)
    )).all():
        h.valid_to = now
        session.add(h)


def alias_history(session: Session, adapter: Adapter, name: str, at=None) -> list[AliasHistoryEntry]:
    rows = session.exec(select(AliasHistory).where(
        AliasHistory.adapter_id == adapter.id, AliasHistory.alias == name).order_by(AliasHistory.id)).all()
    out = [AliasHistoryEntry(version=h.version, from_=aware(h.valid_from), to=aware(h.valid_to), actor=h.actor)
           for h in rows]
    if at is not None:
        at = aware(at)
        out = [h for h in out if h.from_ <= at and (h.to is None or at < h.to)][-1:]
    return out


def count_download(session: Session, v: Version) -> None:
    """Atomic increments (``count = count + 1``), safe under concurrent pulls."""
    session.exec(update(DownloadCount).where(DownloadCount.version_id == v.id).values(
        count=DownloadCount.count + 1))
    session.exec(update(Adapter).where(Adapter.id == v.adapter_id).values(downloads=Adapter.downloads + 1))
    session.commit()


def user_by_name(session: Session, name: str) -> User | None:
    return session.exec(select(User).where(User.name == name)).first()
