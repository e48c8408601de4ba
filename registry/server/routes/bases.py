"""Base models: register (admin), list, read by Hub id or alias."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlmodel import select

from adapterhub.registry.server.bases import base_out, find_base, register_base
from adapterhub.registry.server.deps import CurrentUser, PrincipalDep, SessionDep
from adapterhub.registry.server.errors import ApiError, error_responses
from adapterhub.registry.server.models import RegisteredBase
from adapterhub.registry.server.schemas import BaseCreate, BaseOut

router = APIRouter(prefix="/bases", tags=["bases"], responses=error_responses(401, 404, 422, 429, 503))


@router.post("", response_model=BaseOut, status_code=201,
             responses={200: {"model": BaseOut, "description": "registered again: the base's record replaced"},
                        **error_responses(403, 409)})
def register(body: BaseCreate, session: SessionDep, principal: CurrentUser) -> JSONResponse:
    """Admin only: a base is what every adapter on it is checked against."""
    if not principal.superuser:
        raise ApiError(403, "Forbidden", "only an admin may register base models")
    row, new = register_base(session, principal, body)
    return JSONResponse(base_out(session, row).model_dump(mode="json"), status_code=201 if new else 200)


@router.get("", response_model=list[BaseOut])
def list_bases(session: SessionDep, principal: PrincipalDep) -> list[BaseOut]:
    rows = session.exec(select(RegisteredBase).order_by(RegisteredBase.hub_id)).all()
    return [base_out(session, r) for r in rows]


@router.get("/{ref:path}", response_model=BaseOut)
def read_base(ref: str, session: SessionDep, principal: PrincipalDep) -> BaseOut:
    """By Hub id (``HuggingFaceTB/SmolLM2-135M-Instruct``) or alias (``smollm2-135m``), with the manifest."""
    row = find_base(session, ref)
    if row is None:
        raise ApiError(404, "NotFound", f"no base model {ref!r} is registered (by id or alias)")
    return base_out(session, row, full=True)
