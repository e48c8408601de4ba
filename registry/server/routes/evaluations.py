"""Evaluations: results posted by whoever ran the model (CLI, UI, a worker), with how they were run.

The protocol, confusion matrix and verification are checked in `eval_checks` (422
``InvalidEvaluation``) and stored as posted; see registry/API.md."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import select

from adapterhub.registry.server.crud import audit, evaluation_out, get_adapter, get_version, require
from adapterhub.registry.server.deps import CurrentUser, PrincipalDep, SessionDep
from adapterhub.registry.server.errors import error_responses
from adapterhub.registry.server.eval_checks import check_evaluation
from adapterhub.registry.server.models import Evaluation, Version
from adapterhub.registry.server.schemas import EvaluationCreate, EvaluationOut

router = APIRouter(prefix="/adapters/{ns}/{name}", tags=["evaluations"],
                   responses=error_responses(401, 404, 422, 429, 503))


@router.post("/versions/{version}/evaluations", response_model=EvaluationOut, status_code=201,
             responses=error_responses(403))
def create_evaluation(ns: str, name: str, version: str, body: EvaluationCreate, session: SessionDep,
                      principal: CurrentUser) -> EvaluationOut:
    nsrow, adapter = get_adapter(session, principal, ns, name)
    require(principal, "write", nsrow)
    v = get_version(session, adapter, version)
    check_evaluation(session, adapter, f"{ns}/{name}", body)  # before any row: a refusal changes nothing
    verification = body.verification.model_dump() if body.verification is not None else None
    ev = Evaluation(version_id=v.id, dataset=body.dataset, dataset_sha256=body.dataset_sha256,
                    metrics=dict(body.metrics), created_by=principal.name, protocol=body.protocol,
                    confusion_matrix=body.confusion_matrix, verification=verification)
    session.add(ev)
    session.flush()
    checked = {} if verification is None else {"reproduced": verification["reproduced"],
                                               "verifies": verification["of"] or "card"}
    audit(session, principal.name, "evaluation.create", ns, adapter.id, version=version, dataset=body.dataset,
          metrics=dict(body.metrics), **checked)
    session.commit()
    return evaluation_out(ev, version)


@router.get("/evaluations", response_model=list[EvaluationOut])
def list_evaluations(ns: str, name: str, session: SessionDep, principal: PrincipalDep) -> list[EvaluationOut]:
    _nsrow, adapter = get_adapter(session, principal, ns, name)
    rows = session.exec(select(Evaluation, Version.version).join(Version, Evaluation.version_id == Version.id).where(
        Version.adapter_id == adapter.id).order_by(Evaluation.id)).all()
    return [evaluation_out(e, ver) for e, ver in rows]
