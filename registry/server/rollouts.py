"""Database access for rollouts: start, the transitions, outcome counters, rules applied, the cache.

Every write to a rollout first locks its adapter row (`crud.lock_adapter`), the one lock order
the registry uses, so transitions and outcome reports of one adapter queue instead of racing.
Every transition is an audit-log entry (``rollout.start|step|pause|resume|promote|rollback``);
automatic ones carry ``automatic: true``, the reason, and the actor ``rollout-rules``.

>>> r = start(session, "alice", ns, adapter, RolloutCreate(alias="prod", canary_version="1.1.0", weight=10))
...                                                                              # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from adapterhub.registry.server import canary
from adapterhub.registry.server.auth import aware
from adapterhub.registry.server.crud import audit, get_version, set_alias
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.models import (
    Adapter,
    Alias,
    Namespace,
    Rollout,
    RolloutOutcome,
    Version,
    utcnow,
)
from adapterhub.registry.server.schemas import ArmOut, OutcomeBatch, RolloutCreate, RolloutOut

RULES_ACTOR = "rollout-rules"
# action -> (states it applies to, state after)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "step": (canary.OPEN_STATES, None),
    "pause": (("active",), "paused"),
    "resume": (("paused",), "active"),
    "promote": (canary.OPEN_STATES, "promoted"),
    "rollback": (canary.OPEN_STATES, "rolled_back"),
}
COUNTERS = ("requests", "errors", "latency_sum", "latency_sq_sum", "quality_sum", "quality_n")


def open_rollout(session: Session, adapter_id: int, alias: str) -> Rollout | None:
    """The active or paused rollout of ``alias`` (there is at most one)."""
    return session.exec(select(Rollout).where(
        Rollout.adapter_id == adapter_id, Rollout.alias == alias, Rollout.state.in_(canary.OPEN_STATES))
    ).first()


def latest_rollout(session: Session, adapter_id: int, alias: str) -> Rollout:
    """The newest rollout of ``alias`` in any state; 404 ``RolloutNotFound`` if there never was one."""
    row = session.exec(select(Rollout).where(Rollout.adapter_id == adapter_id, Rollout.alias == alias)
                       .order_by(Rollout.id.desc())).first()
    if row is None:
        raise ApiError(404, "RolloutNotFound", f"no rollout on alias {alias!r}")
    return row


def current_rollout(session: Session, adapter_id: int, alias: str) -> Rollout:
    """The open rollout of ``alias``; 409 ``RolloutNotActive`` naming the last one's state, or 404."""
    row = open_rollout(session, adapter_id, alias)
    if row is None:
        last = latest_rollout(session, adapter_id, alias)
        raise ApiError(409, "RolloutNotActive",
                       f"no active rollout on alias {alias!r} (the latest, {last.id}, is {last.state})")
    return row


def guard_alias(session: Session, adapter_id: int, alias: str) -> None:
    """Refuse to move or delete an alias while a rollout holds it (promote or roll back first)."""
    row = open_rollout(session, adapter_id, alias)
    if row is not None:
        raise ApiError(409, "RolloutActive", f"alias {alias!r} is held by rollout {row.id} ({row.state}); "
                       "promote or roll it back first")


def arm_stats(session: Session, rollout_id: int) -> dict[str, canary.ArmStats]:
    rows = session.exec(select(RolloutOutcome).where(RolloutOutcome.rollout_id == rollout_id)).all()
    found = {r.arm: canary.ArmStats(**{k: getattr(r, k) for k in COUNTERS}) for r in rows}
    return {arm: found.get(arm, canary.ArmStats()) for arm in canary.ARMS}


def start(session: Session, actor: str, ns: Namespace, adapter: Adapter, body: RolloutCreate) -> Rollout:
    """Open a rollout of ``body.alias`` from its current version to ``body.canary_version``.

    The caller holds the adapter lock; every check runs before the first row is added."""
    alias = session.exec(select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == body.alias)).first()
    if alias is None:
        raise ApiError(404, "RevisionNotFound", f"no alias {body.alias!r}")
    stable = session.get(Version, alias.version_id)
    canary_v = get_version(session, adapter, body.canary_version)
    if canary_v.yanked:
        raise ApiError(422, "InvalidRollout", f"version {canary_v.version} is yanked; it cannot be a canary")
    if canary_v.id == stable.id:
        raise ApiError(422, "InvalidRollout",
                       f"alias {body.alias!r} already points at {stable.version}; nothing to roll out")
    if (existing := open_rollout(session, adapter.id, body.alias)) is not None:
        raise ApiError(409, "RolloutExists", f"alias {body.alias!r} already has an {existing.state} rollout "
                       f"({existing.id}: {stable.version} -> {session.get(Version, existing.canary_version_id).version})"
                       "; promote or roll it back first")
    schedule = body.schedule.model_dump() if body.schedule else {}
    row = Rollout(adapter_id=adapter.id, alias=body.alias, stable_version_id=stable.id,
                  canary_version_id=canary_v.id, weight=body.weight, schedule=schedule,
                  thresholds=body.thresholds.model_dump(), reason="started", created_by=actor, updated_by=actor)
    session.add(row)
    session.flush()
    for arm in canary.ARMS:
        session.add(RolloutOutcome(rollout_id=row.id, arm=arm))
    audit(session, actor, "rollout.start", ns.name, adapter.id, rollout_id=row.id, alias=body.alias,
          stable=stable.version, canary=canary_v.version, weight=body.weight, schedule=schedule or None)
    return row


def transition(session: Session, actor: str, ns: Namespace, adapter: Adapter, row: Rollout, action: str,
               weight: float | None = None, reason: str = "", automatic: bool = False) -> Rollout:
    """Apply ``action`` (see `TRANSITIONS`) to an open rollout and audit it; the caller commits."""
    states, after = TRANSITIONS[action]
    if row.state not in states:
        raise ApiError(409, "RolloutNotActive", f"rollout {row.id} is {row.state}; cannot {action} it")
    previous = row.weight
    if action == "promote":
        weight = 100.0
        set_alias(session, actor, ns, adapter, row.alias, session.get(Version, row.canary_version_id))
    elif action == "rollback":
        weight = 0.0
    if weight is not None and weight != row.weight:
        row.weight = weight
        row.step_started_at = utcnow()
        row.step_base_requests = arm_stats(session, row.id)["canary"].requests
    now = utcnow()
    row.state = after or row.state
    row.reason = reason or action
    row.updated_at, row.updated_by = now, actor
    session.add(row)
    details = {"rollout_id": row.id, "alias": row.alias, "weight": row.weight, "previous_weight": previous,
               "state": row.state}
    if reason:
        details["reason"] = reason
    if automatic:
        details["automatic"] = True
    audit(session, actor, f"rollout.{action}", ns.name, adapter.id, **details)
    return row


def record_outcomes(session: Session, row: Rollout, batches: list[OutcomeBatch]) -> None:
    """Add each batch to its arm's counters with ``col = col + n`` (atomic in the database)."""
    for b in batches:
        values = {k: getattr(RolloutOutcome, k) + getattr(b, k) for k in COUNTERS}
        session.exec(update(RolloutOutcome).where(RolloutOutcome.rollout_id == row.id,
                                                  RolloutOutcome.arm == b.arm).values(**values))


def apply_rules(session: Session, ns: Namespace, adapter: Adapter, row: Rollout,
                now: datetime | None = None) -> canary.Decision:
    """Evaluate the rules on ``row`` and apply what they decide (the caller holds the lock, commits)."""
    decision = due(session, row, now)
    if decision.action:
        transition(session, RULES_ACTOR, ns, adapter, row, decision.action, decision.weight, decision.reason,
                   automatic=True)
    return decision


def due(session: Session, row: Rollout, now: datetime | None = None) -> canary.Decision:
    """What the rules would do to ``row`` now (reads only)."""
    view = _RuleView(row.state, row.weight, row.schedule, row.thresholds, aware(row.step_started_at),
                     row.step_base_requests)
    return canary.evaluate(view, arm_stats(session, row.id), now or utcnow())


@dataclass(frozen=True)
class _RuleView:
    state: str
    weight: float
    schedule: dict
    thresholds: dict
    step_started_at: datetime
    step_base_requests: int


def rollout_out(session: Session, row: Rollout) -> RolloutOut:
    stats = arm_stats(session, row.id)
    versions = {"stable": session.get(Version, row.stable_version_id).version,
                "canary": session.get(Version, row.canary_version_id).version}
    arms = {arm: ArmOut(version=versions[arm], requests=s.requests, errors=s.errors, error_rate=s.error_rate,
                        latency_mean=s.latency_mean, latency_std=s.latency_std, quality_mean=s.quality_mean,
                        quality_n=s.quality_n) for arm, s in stats.items()}
    steps = (row.schedule or {}).get("steps") or []
    return RolloutOut(
        id=row.id, alias=row.alias, stable_version=versions["stable"], canary_version=versions["canary"],
        weight=row.weight, state=row.state,
        next_step=canary.next_step(steps, row.weight) if row.state in canary.OPEN_STATES else None,
        schedule=row.schedule or {}, thresholds=row.thresholds or {}, reason=row.reason,
        error_p_value=canary.error_p_value(stats["canary"], stats["stable"]),
        step_started_at=aware(row.step_started_at), created_at=aware(row.created_at), created_by=row.created_by,
        updated_at=aware(row.updated_at), updated_by=row.updated_by, arms=arms,
    )


@dataclass(frozen=True)
class LiveRollout:
    """What `resolve` needs of an open rollout, cached per (adapter, alias)."""

    id: int
    weight: float
    stable_version: str
    stable_commit: str
    canary_version: str
    canary_commit: str


class RolloutCache:
    """Open rollouts per (adapter id, alias) for ``ttl_s`` seconds, so `resolve` (on every request
    path) costs no rollout query; writes in this process invalidate at once, other processes see
    a change within ``ttl_s``. A generation per key keeps a read that raced an invalidation from
    storing what it read."""

    def __init__(self, ttl_s: float = 1.0):
        self.ttl_s = ttl_s
        self._entries: dict[tuple[int, str], tuple[float, LiveRollout | None]] = {}
        self._generation: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, adapter_id: int, alias: str) -> LiveRollout | None:
        key, now = (adapter_id, alias), time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation.get(key, 0)
        live = _load_live(session, adapter_id, alias)
        with self._lock:
            if self._generation.get(key, 0) == generation:
                self._entries[key] = (now + self.ttl_s, live)
        return live

    def invalidate(self, adapter_id: int, alias: str) -> None:
        key = (adapter_id, alias)
        with self._lock:
            self._generation[key] = self._generation.get(key, 0) + 1
            self._entries.pop(key, None)


def _load_live(session: Session, adapter_id: int, alias: str) -> LiveRollout | None:
    row = open_rollout(session, adapter_id, alias)
    if row is None:
        return None
    stable, canary_v = session.get(Version, row.stable_version_id), session.get(Version, row.canary_version_id)
    # a yanked arm gets no traffic (PEP 592: only an exact pin reaches a yanked version); with both
    # yanked the alias resolves as if no rollout were open, and so is refused
    if stable.yanked and canary_v.yanked:
        return None
    weight = 0.0 if canary_v.yanked else 100.0 if stable.yanked else row.weight
    return LiveRollout(row.id, weight, stable.version, stable.commit, canary_v.version, canary_v.commit)
