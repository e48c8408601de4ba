"""Rollouts: an alias moving from its stable version to a canary by weight, by hand or by rule.

Reads are open to readers of the adapter; everything else needs write scope on the namespace.
Reading a rollout and reporting outcomes both apply the rules (`rollouts.apply_rules`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from fastapi import APIRouter, Request
from sqlmodel import Session, select

from adapterhub.registry.reference import check_alias
from adapterhub.registry.server import rollouts
from adapterhub.registry.server.crud import get_adapter, lock_adapter, require
from adapterhub.registry.server.deps import CurrentUser, PrincipalDep, RolloutCacheDep, SessionDep
from adapterhub.registry.server.errors import ApiError, error_responses
from adapterhub.registry.server.models import Namespace, Rollout
from adapterhub.registry.server.schemas import (
    OutcomeReport,
    RolloutCreate,
    RolloutNote,
    RolloutOut,
    RolloutStep,
)

router = APIRouter(prefix="/adapters/{ns}/{name}/rollouts", tags=["rollouts"],
                   responses=error_responses(401, 404, 422, 429, 503))
WRITE_ERRORS = error_responses(403, 409)


@router.post("", response_model=RolloutOut, status_code=201, responses=WRITE_ERRORS)
def start_rollout(ns: str, name: str, body: RolloutCreate, session: SessionDep, principal: CurrentUser,
                  cache: RolloutCacheDep) -> RolloutOut:
    check_alias(body.alias)
    nsrow, adapter = get_adapter(session, principal, ns, name)
    require(principal, "write", nsrow)
    adapter = lock_adapter(session, adapter.id)
    row = rollouts.start(session, principal.name, nsrow, adapter, body)
    session.commit()
    cache.invalidate(adapter.id, body.alias)
    return rollouts.rollout_out(session, row)


@router.get("", response_model=list[RolloutOut])
def list_rollouts(ns: str, name: str, session: SessionDep, principal: PrincipalDep,
                  alias: str | None = None) -> list[RolloutOut]:
    """Every rollout of the adapter (of one alias with ``?alias=``), newest first."""
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    query = select(Rollout).where(Rollout.adapter_id == adapter.id)
    if alias is not None:
        query = query.where(Rollout.alias == check_alias(alias))
    return [rollouts.rollout_out(session, r) for r in session.exec(query.order_by(Rollout.id.desc())).all()]


@router.get("/{alias}", response_model=RolloutOut)
def read_rollout(ns: str, name: str, alias: str, request: Request, session: SessionDep, principal: PrincipalDep,
                 cache: RolloutCacheDep) -> RolloutOut:
    """The alias's newest rollout with per-arm figures; a transition the rules find due is applied first."""
    check_alias(alias)
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    row = rollouts.latest_rollout(session, adapter.id, alias)
    if rollouts.due(session, row).action:
        with Session(request.app.state.write_engine, expire_on_commit=False) as ws:
            with contextlib.suppress(ApiError):  # another writer ended it meanwhile: show what is there
                _write(ws, adapter.id, alias, cache, lambda *_: None)
        session.rollback()  # end the read snapshot (SQLite WAL) so the re-read sees the write
        row = session.get(Rollout, row.id)
    return rollouts.rollout_out(session, row)


def _write(session: Session, adapter_id: int, alias: str, cache: rollouts.RolloutCache,
           change: Callable) -> Rollout:
    """Lock the adapter, ``change(session, nsrow, adapter, row)`` the open rollout, apply the rules, commit."""
    adapter = lock_adapter(session, adapter_id)
    nsrow = session.get(Namespace, adapter.namespace_id)
    row = rollouts.current_rollout(session, adapter.id, alias)
    change(session, nsrow, adapter, row)
    rollouts.apply_rules(session, nsrow, adapter, row)
    session.commit()
    cache.invalidate(adapter.id, alias)
    return row


def _manual(ns: str, name: str, alias: str, session: Session, principal, cache: rollouts.RolloutCache,
            change: Callable) -> RolloutOut:
    check_alias(alias)
    nsrow, adapter = get_adapter(session, principal, ns, name)
    require(principal, "write", nsrow)
    row = _write(session, adapter.id, alias, cache, change)
    return rollouts.rollout_out(session, row)


def _do(action: str, principal, weight: float | None = None, reason: str = "") -> Callable:
    return lambda session, nsrow, adapter, row: rollouts.transition(
        session, principal.name, nsrow, adapter, row, action, weight, reason)


@router.post("/{alias}/step", response_model=RolloutOut, responses=WRITE_ERRORS)
def step(ns: str, name: str, alias: str, body: RolloutStep, session: SessionDep, principal: CurrentUser,
         cache: RolloutCacheDep) -> RolloutOut:
    """Set the canary weight by hand (0-100; raising it keeps every key already on the canary there)."""
    return _manual(ns, name, alias, session, principal, cache, _do("step", principal, body.weight))


@router.post("/{alias}/pause", response_model=RolloutOut, responses=WRITE_ERRORS)
def pause(ns: str, name: str, alias: str, session: SessionDep, principal: CurrentUser,
          cache: RolloutCacheDep, body: RolloutNote | None = None) -> RolloutOut:
    """Hold the split where it is: no automatic step-up (a regression still rolls back)."""
    return _manual(ns, name, alias, session, principal, cache, _do("pause", principal, reason=_why(body)))


@router.post("/{alias}/resume", response_model=RolloutOut, responses=WRITE_ERRORS)
def resume(ns: str, name: str, alias: str, session: SessionDep, principal: CurrentUser,
           cache: RolloutCacheDep, body: RolloutNote | None = None) -> RolloutOut:
    return _manual(ns, name, alias, session, principal, cache, _do("resume", principal, reason=_why(body)))


@router.post("/{alias}/promote", response_model=RolloutOut, responses=WRITE_ERRORS)
def promote(ns: str, name: str, alias: str, session: SessionDep, principal: CurrentUser,
            cache: RolloutCacheDep, body: RolloutNote | None = None) -> RolloutOut:
    """Point the alias at the canary version and end the rollout."""
    return _manual(ns, name, alias, session, principal, cache, _do("promote", principal, reason=_why(body)))


@router.post("/{alias}/rollback", response_model=RolloutOut, responses=WRITE_ERRORS)
def rollback(ns: str, name: str, alias: str, session: SessionDep, principal: CurrentUser,
             cache: RolloutCacheDep, body: RolloutNote | None = None) -> RolloutOut:
    """Send all traffic back to stable (weight 0) and end the rollout; the alias does not move."""
    return _manual(ns, name, alias, session, principal, cache, _do("rollback", principal, reason=_why(body)))


@router.post("/{alias}/outcomes", response_model=RolloutOut, responses=WRITE_ERRORS)
def report_outcomes(ns: str, name: str, alias: str, body: OutcomeReport, session: SessionDep,
                    principal: CurrentUser, cache: RolloutCacheDep) -> RolloutOut:
    """Add per-arm counters of served requests, then apply the rules."""

    def record(session: Session, _nsrow, _adapter, row: Rollout) -> None:
        if body.rollout_id is not None and body.rollout_id != row.id:
            raise ApiError(409, "RolloutNotActive",
                           f"rollout {body.rollout_id} is not the current rollout of alias {alias!r} ({row.id})")
        rollouts.record_outcomes(session, row, body.batches)

    return _manual(ns, name, alias, session, principal, cache, record)


def _why(body: RolloutNote | None) -> str:
    return body.reason if body else ""
