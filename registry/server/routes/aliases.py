"""Aliases: list, set/move, delete, and the history ("which version was stable at time T").

An alias held by an open rollout moves only through the rollout (promote or roll back first)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from sqlmodel import select

from adapterhub.registry.reference import check_alias
from adapterhub.registry.server.crud import (
    alias_history,
    delete_alias,
    get_adapter,
    get_version,
    lock_adapter,
    refuse_yanked_target,
    require,
    set_alias,
)
from adapterhub.registry.server.deps import CurrentUser, PrincipalDep, SessionDep
from adapterhub.registry.server.errors import error_responses
from adapterhub.registry.server.models import Alias, Version
from adapterhub.registry.server.rollouts import guard_alias
from adapterhub.registry.server.schemas import AliasHistoryEntry, AliasOut, AliasSet

router = APIRouter(prefix="/adapters/{ns}/{name}/aliases", tags=["aliases"],
                   responses=error_responses(401, 404, 422, 429, 503))


@router.get("", response_model=dict[str, str])
def list_aliases(ns: str, name: str, session: SessionDep, principal: PrincipalDep) -> dict[str, str]:
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    rows = session.exec(select(Alias.name, Version.version).join(Version, Alias.version_id == Version.id).where(
        Alias.adapter_id == adapter.id).order_by(Alias.name)).all()
    return dict(rows)


@router.put("/{alias}", response_model=AliasOut, responses=error_responses(403, 409))
def put_alias(ns: str, name: str, alias: str, body: AliasSet, session: SessionDep,
              principal: CurrentUser) -> AliasOut:
    check_alias(alias)
    nsrow, adapter = get_adapter(session, principal, ns, name)
    require(principal, "write", nsrow)
    adapter = lock_adapter(session, adapter.id)
    guard_alias(session, adapter.id, alias)
    target = get_version(session, adapter, body.version)
    refuse_yanked_target(target, alias)
    set_alias(session, principal.name, nsrow, adapter, alias, target)
    session.commit()
    return AliasOut(alias=alias, version=body.version)


@router.delete("/{alias}", status_code=204, responses=error_responses(403, 409))
def remove_alias(ns: str, name: str, alias: str, session: SessionDep, principal: CurrentUser) -> Response:
    nsrow, adapter = get_adapter(session, principal, ns, name)
    require(principal, "write", nsrow)
    adapter = lock_adapter(session, adapter.id)
    guard_alias(session, adapter.id, alias)
    delete_alias(session, principal.name, nsrow, adapter, alias)
    session.commit()
    return Response(status_code=204)


@router.get("/{alias}/history", response_model=list[AliasHistoryEntry], response_model_by_alias=True)
def history(ns: str, name: str, alias: str, session: SessionDep, principal: PrincipalDep,
            at: datetime | None = None) -> list[AliasHistoryEntry]:
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    return alias_history(session, adapter, alias, at)
