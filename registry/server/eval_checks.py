"""The checks on a posted evaluation's protocol, confusion matrix and verification.

Each refusal is 422 ``InvalidEvaluation`` (a bad ``metrics`` key: ``InvalidRequest``) naming what
was wrong, raised before the first row is written, so a refused evaluation changes nothing. What
the schema already bounds (the matrix at most 1000 x 1000 of non-negative integers, at most 50
differences of 2000 characters, an ``of`` in the id range) is refused earlier, as any body that
does not fit: 422 ``InvalidRequest``.

The protocol is stored as posted, once it parses with `EvalProtocol.from_dict` and re-serialises:
keys this server's `adapterhub.eval_protocol` does not know (a newer engine's) are kept for the
readers that know them, and a reader gets back exactly the JSON that was sent.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlmodel import Session, select

from adapterhub.eval_protocol import EvalProtocol, ProtocolError
from adapterhub.registry.server.errors import ApiError
from adapterhub.registry.server.models import Adapter, Evaluation, Version
from adapterhub.registry.server.schemas import EvaluationCreate, VerificationIn

MAX_PROTOCOL_BYTES = 64 * 1024  # as compact UTF-8 JSON
MAX_PROTOCOL_DEPTH = 16  # a protocol nests 3 levels; a deeper one is not a protocol


def refuse(detail: str) -> ApiError:
    return ApiError(422, "InvalidEvaluation", detail)


def check_evaluation(session: Session, adapter: Adapter, repo: str, body: EvaluationCreate) -> None:
    """Raise the first problem of ``body`` beyond its schema; ``repo`` (``ns/name``) names the adapter."""
    for key in body.metrics:  # the schema lets a lone surrogate through in a key: stored, no read could answer
        if _not_unicode(key):
            raise ApiError(422, "InvalidRequest", f"invalid request: metrics: key {key!r} is not valid Unicode")
    protocol = check_protocol(body.protocol, body.dataset_sha256) if body.protocol is not None else None
    if body.confusion_matrix is not None:
        check_matrix(body.confusion_matrix, protocol)
    if body.verification is not None:
        check_verification(session, adapter, repo, body.verification)


def check_protocol(raw: dict[str, Any], dataset_sha256: str = "") -> EvalProtocol:
    problem = _shape_problem(raw)
    if problem:
        raise refuse(f"invalid protocol: {problem}")
    size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_PROTOCOL_BYTES:
        raise refuse(f"invalid protocol: {size} bytes as JSON; the limit is {MAX_PROTOCOL_BYTES}")
    try:
        protocol = EvalProtocol.from_dict(raw)
        protocol.to_dict()  # what every reader does with it: it must not fail there instead
    except ProtocolError as exc:
        raise refuse(f"invalid protocol: {exc}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a field of the wrong type
        raise refuse(f"invalid protocol: malformed ({type(exc).__name__}: {exc})") from None
    recorded = protocol.data.sha256
    if recorded and dataset_sha256 and recorded != dataset_sha256:
        raise refuse(f"protocol data.sha256 {recorded!r} differs from dataset_sha256 {dataset_sha256!r}: "
                     "both are the sha256 of the examples scored")
    return protocol


def check_matrix(matrix: list[list[int]], protocol: EvalProtocol | None) -> None:
    n = len(matrix)
    if n == 0:
        raise refuse("confusion_matrix is empty: give one row per true label")
    for i, row in enumerate(matrix):
        if len(row) != n:
            raise refuse(f"confusion_matrix must be square (rows true, columns predicted): "
                          f"{n} rows, but row {i} has {len(row)} columns")
    if protocol is not None and protocol.labels is not None and len(protocol.labels) != n:
        raise refuse(f"confusion_matrix is {n} x {n}, but the protocol names {len(protocol.labels)} labels")


def check_verification(session: Session, adapter: Adapter, repo: str, v: VerificationIn) -> None:
    if v.of is not None and v.of_card:
        raise refuse("verification: give of (the id of the evaluation re-run) or of_card: true "
                     "(the card's figures were re-run), not both")
    if v.of is None and not v.of_card:
        raise refuse("verification: say what was re-run: of (the id of an evaluation of this adapter) "
                     "or of_card: true (the card's figures)")
    if v.of is not None:
        found = session.exec(select(Evaluation.id).join(Version, Evaluation.version_id == Version.id).where(
            Evaluation.id == v.of, Version.adapter_id == adapter.id)).first()
        if found is None:  # another adapter's evaluation answers as a missing one: ids leak nothing
            raise refuse(f"verification.of: {repo} has no evaluation {v.of} "
                         f"(GET /api/v1/adapters/{repo}/evaluations lists them)")


def _not_unicode(text: str) -> bool:
    """A lone surrogate (``"\\ud800"`` in JSON): Python's parser takes it, no UTF-8 answer can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shape_problem(raw: Any) -> str | None:
    """Where ``raw`` nests too deeply or holds what no JSON answer can carry back (NaN, Infinity, a lone
    surrogate), else None."""
    stack: list[tuple[Any, str, int]] = [(raw, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_PROTOCOL_DEPTH:
            return f"nested deeper than {MAX_PROTOCOL_DEPTH} levels at {where.lstrip('.')}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where.lstrip('.')} is {value}; NaN and Infinity are not allowed"
        if isinstance(value, str) and _not_unicode(value):
            return f"{where.lstrip('.')} is not valid Unicode (a lone surrogate)"
        if isinstance(value, dict):
            for k in value:
                if _not_unicode(k):
                    return f"key {k!r} of {where.lstrip('.') or 'the protocol'} is not valid Unicode (a lone surrogate)"
            stack.extend((v, f"{where}.{k}", depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    return None
