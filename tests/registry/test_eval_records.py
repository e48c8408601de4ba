"""An evaluation stores how it was run: its protocol, confusion matrix and verification, on SQLite and
PostgreSQL (the `server` fixture), every bad one refused with a 422 that names it and stores nothing,
and migration 0007 keeps the evaluations stored before it, reading back with nulls."""

from __future__ import annotations

import json
import math
import uuid

import pytest
from alembic import command
from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.types import JSON, Boolean, DateTime, Integer
from sqlmodel import Session

from adapterhub.eval_protocol import ARGMAX_HEAD, CONSTRAINED_ANSWER, DataRef, EvalProtocol, Template
from adapterhub.registry.client import Hub
from adapterhub.registry.server import db
from adapterhub.registry.server.crud import evaluation_out
from adapterhub.registry.server.models import Evaluation, utcnow
from adapterhub.registry.server.settings import normalize_database_url
from tests.helpers.snapshots import database_state
from tests.registry.factory import adapter_files, client, make_user, push
from tests.registry.test_migrations import empty_url  # noqa: F401  (the fixture: a blank SQLite or PostgreSQL)

SHA = "ab" * 32
LABELS = ("negative", "neutral", "positive")
PROTOCOL = EvalProtocol(
    task="classification", scoring=CONSTRAINED_ANSWER, data=DataRef("reviews:test", sample=300, sha256=SHA),
    labels=LABELS, max_length=128, template=Template("Choose one of {choices}.\n{text}\nAnswer:", max_chars=500),
    base="HuggingFaceTB/SmolLM2-135M-Instruct", software={"adapterhub": "0.4.0", "torch": "2.5.1"},
).to_dict()
MATRIX = [[90, 7, 3], [5, 80, 15], [1, 9, 90]]
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def repo(server):
    """``(ns, client, id)``: a user's adapter ``ev@1.0.0`` holding one plain evaluation, ``id``."""
    ns = f"e{uuid.uuid4().hex[:10]}"
    with client(server.url, server.admin_token) as admin:
        token = make_user(admin, ns)
    with client(server.url, token) as c:
        assert push(c, ns, "ev", "1.0.0", adapter_files(31)).status_code == 201
        r = c.post(f"/api/v1/adapters/{ns}/ev/versions/1.0.0/evaluations",
                   json={"dataset": "reviews:test", "dataset_sha256": SHA, "metrics": {"accuracy": 0.8}})
        assert r.status_code == 201, r.text
        yield ns, c, r.json()["id"]


def _post(c, ns: str, body: dict, adapter: str = "ev", version: str = "1.0.0"):
    return c.post(f"/api/v1/adapters/{ns}/{adapter}/versions/{version}/evaluations", json=body)


def _sql_nulls(server, evaluation_id: int) -> tuple:
    """Whether the row's three new columns are SQL NULL (not the JSON text 'null'), as migrated rows are."""
    url = normalize_database_url(server.database_url) if server.database_url else \
        f"sqlite:///{server.home / 'registry.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(text(
                "SELECT protocol IS NULL, confusion_matrix IS NULL, verification IS NULL FROM evaluation WHERE id = :i"),
                {"i": evaluation_id}).one())
    finally:
        engine.dispose()


# -- round trips ------------------------------------------------------------------------------------

def test_protocol_matrix_and_verification_round_trip(server, repo, tmp_path):
    ns, c, first = repo
    protocol = {**PROTOCOL, "from_a_newer_engine": {"kept": True}}  # stored as posted, unknown keys too
    body = {"dataset": "reviews:test", "dataset_sha256": SHA, "metrics": {"accuracy": 0.9},
            "protocol": protocol, "confusion_matrix": MATRIX,
            "verification": {"of": first, "reproduced": False, "differences": ["accuracy 0.9 vs recorded 0.8"]}}
    r = _post(c, ns, body)
    assert r.status_code == 201, r.text
    posted = r.json()
    want = {"protocol": protocol, "confusion_matrix": MATRIX,
            "verification": {"of": first, "of_card": False, "reproduced": False,
                             "differences": ["accuracy 0.9 vs recorded 0.8"]}}
    assert {k: posted[k] for k in want} == want
    listed = c.get(f"/api/v1/adapters/{ns}/ev/evaluations").json()
    assert [e["id"] for e in listed] == [first, posted["id"]]
    assert listed[-1] == posted
    assert listed[0]["protocol"] is None and listed[0]["confusion_matrix"] is None and listed[0]["verification"] is None
    in_version = c.get(f"/api/v1/adapters/{ns}/ev/versions/1.0.0").json()["evaluations"]
    assert in_version[-1] == posted
    assert EvalProtocol.from_dict(posted["protocol"]) == EvalProtocol.from_dict(PROTOCOL)
    audit = [a for a in c.get(f"/api/v1/adapters/{ns}/ev/audit").json() if a["action"] == "evaluation.create"]
    assert audit[-1]["details"]["reproduced"] is False and audit[-1]["details"]["verifies"] == first
    assert "reproduced" not in audit[0]["details"]

    # the client: the new fields go only when given, and Hub.evaluations lists them
    with Hub(server.url, c.headers["Authorization"].split()[1], cache_dir=tmp_path / "cache", offline=False) as hub:
        card_check = hub.post_eval(f"{ns}/ev@1.0.0", "reviews:test", SHA, {"accuracy": 0.9}, protocol=PROTOCOL,
                                   confusion_matrix=MATRIX, verification={"of_card": True, "reproduced": True})
        plain = hub.post_eval(f"{ns}/ev@1.0.0", "reviews:test", SHA, {"accuracy": 0.9})
        assert card_check["verification"] == {"of": None, "of_card": True, "reproduced": True, "differences": []}
        assert plain["protocol"] is None and plain["verification"] is None
        assert hub.evaluations(f"{ns}/ev")[-2:] == [card_check, plain]
    assert _sql_nulls(server, plain["id"]) == (True, True, True)
    assert _sql_nulls(server, card_check["id"]) == (False, False, False)


def test_a_protocol_without_labels_takes_any_square_matrix(repo):
    ns, c, _ = repo
    protocol = EvalProtocol(task="classification", scoring=ARGMAX_HEAD, data=DataRef("bbc-news:test")).to_dict()
    r = _post(c, ns, {"dataset": "bbc-news:test", "metrics": {"accuracy": 1.0}, "protocol": protocol,
                      "confusion_matrix": [[2, 0], [0, 2]]})
    assert r.status_code == 201, r.text
    assert r.json()["confusion_matrix"] == [[2, 0], [0, 2]]


# -- refusals: the status, the message naming the problem, and nothing stored -----------------------

def _refused(server, c, ns: str, body: dict | str, status: int, code: str, detail: str, adapter: str = "ev") -> None:
    before = database_state(server)
    if isinstance(body, str):
        r = c.post(f"/api/v1/adapters/{ns}/{adapter}/versions/1.0.0/evaluations", content=body, headers=JSON_HEADERS)
    else:
        r = _post(c, ns, body, adapter)
    assert r.status_code == status, r.text
    assert r.headers["x-error-code"] == code and r.json()["code"] == code
    assert detail in r.json()["detail"], r.json()["detail"]
    assert database_state(server) == before


def _nested(depth: int) -> dict:
    out: dict = {}
    for _ in range(depth):
        out = {"x": out}
    return out


BASE = {"dataset": "reviews:test", "dataset_sha256": SHA, "metrics": {"accuracy": 0.9}}
PROTOCOL_CASES = [
    ("unknown scoring", {"protocol": {**PROTOCOL, "scoring": "vibes"}},
     "invalid protocol: unknown scoring 'vibes'; use one of argmax-head"),
    ("no data", {"protocol": {k: v for k, v in PROTOCOL.items() if k != "data"}},
     "invalid protocol: malformed protocol: 'data'"),
    ("bad max_length", {"protocol": {**PROTOCOL, "max_length": 0}},
     "invalid protocol: protocol max_length must be a positive integer, got 0"),
    ("template text does not match its sha256", {"protocol": {**PROTOCOL, "template": {**PROTOCOL["template"], "text": "x"}}},
     "invalid protocol: protocol template: its text does not match its sha256"),
    ("template text not a string", {"protocol": {**PROTOCOL, "template": {"text": 5}}},
     "invalid protocol: protocol template.text must be a string"),
    ("over 64 KiB", {"protocol": {**PROTOCOL, "software": {"notes": "n" * 65_536}}},
     "bytes as JSON; the limit is 65536"),
    ("too deep", {"protocol": {**PROTOCOL, "software": _nested(20)}},
     "invalid protocol: nested deeper than 16 levels at software.x"),
    ("sha256 differs", {"protocol": {**PROTOCOL, "data": {**PROTOCOL["data"], "sha256": "cd" * 32}}},
     f"protocol data.sha256 '{'cd' * 32}' differs from dataset_sha256 '{SHA}'"),
]
MATRIX_CASES = [
    ("not square", {"confusion_matrix": [[1, 2], [3]]},
     "confusion_matrix must be square (rows true, columns predicted): 2 rows, but row 1 has 1 columns"),
    ("empty", {"confusion_matrix": []}, "confusion_matrix is empty"),
    ("size is not the labels'", {"protocol": PROTOCOL, "confusion_matrix": [[1, 0], [0, 1]]},
     "confusion_matrix is 2 x 2, but the protocol names 3 labels"),
]
VERIFICATION_CASES = [
    ("both of and of_card", lambda first: {"verification": {"of": first, "of_card": True, "reproduced": True}},
     "verification: give of (the id of the evaluation re-run) or of_card: true"),
    ("neither of nor of_card", lambda first: {"verification": {"reproduced": True}},
     "verification: say what was re-run"),
    ("of a missing evaluation", lambda first: {"verification": {"of": first + 10_000, "reproduced": True}},
     "has no evaluation"),
]
SCHEMA_CASES = [  # bounded by the schema: 422 InvalidRequest naming the field
    ("protocol not an object", {"protocol": [1]}, "invalid request: protocol: Input should be a valid dictionary"),
    ("negative count", {"confusion_matrix": [[1, -1], [0, 1]]},
     "confusion_matrix.0.1: Input should be greater than or equal to 0"),
    ("fractional count", {"confusion_matrix": [[1.5]]}, "confusion_matrix.0.0: Input should be a valid integer"),
    ("boolean count", {"confusion_matrix": [[True]]}, "confusion_matrix.0.0: Input should be a valid integer"),
    ("string count", {"confusion_matrix": [["3"]]}, "confusion_matrix.0.0: Input should be a valid integer"),
    ("count past 2^53", {"confusion_matrix": [[2**53]]}, "confusion_matrix.0.0: Input should be less than or equal to"),
    ("over 1000 rows", {"confusion_matrix": [[0]] * 1001},
     "confusion_matrix: List should have at most 1000 items"),
    ("over 1000 columns", {"confusion_matrix": [[0] * 1001]},
     "confusion_matrix.0: List should have at most 1000 items"),
    ("over 50 differences", {"verification": {"of_card": True, "reproduced": False, "differences": ["d"] * 51}},
     "verification.differences: List should have at most 50 items"),
    ("a difference over 2000 characters",
     {"verification": {"of_card": True, "reproduced": False, "differences": ["d" * 2001]}},
     "verification.differences.0: String should have at most 2000 characters"),
    ("of out of range", {"verification": {"of": 2**40, "reproduced": True}},
     "verification.of: Input should be less than or equal to 2147483647"),
    ("reproduced missing", {"verification": {"of_card": True}}, "verification.reproduced: Field required"),
]


@pytest.mark.parametrize(("extra", "detail"), [c[1:] for c in PROTOCOL_CASES + MATRIX_CASES],
                         ids=[c[0] for c in PROTOCOL_CASES + MATRIX_CASES])
def test_a_bad_protocol_or_matrix_is_refused_and_nothing_stored(server, repo, extra, detail):
    ns, c, _ = repo
    _refused(server, c, ns, {**BASE, **extra}, 422, "InvalidEvaluation", detail)


@pytest.mark.parametrize(("extra", "detail"), [c[1:] for c in VERIFICATION_CASES], ids=[c[0] for c in VERIFICATION_CASES])
def test_a_bad_verification_is_refused_and_nothing_stored(server, repo, extra, detail):
    ns, c, first = repo
    _refused(server, c, ns, {**BASE, **extra(first)}, 422, "InvalidEvaluation", detail)


@pytest.mark.parametrize(("extra", "detail"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_what_the_schema_bounds_is_refused_and_nothing_stored(server, repo, extra, detail):
    ns, c, _ = repo
    _refused(server, c, ns, {**BASE, **extra}, 422, "InvalidRequest", detail)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_or_infinity_in_a_protocol_is_refused(server, repo, value):
    # Python's JSON parser takes them; stored, PostgreSQL would refuse the row and no reader could answer it
    ns, c, _ = repo
    raw = json.dumps({**BASE, "protocol": {**PROTOCOL, "software": {"x": "@"}}}).replace('"@"', value)
    shown = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[value]
    _refused(server, c, ns, raw, 422, "InvalidEvaluation",
             f"invalid protocol: software.x is {shown}; NaN and Infinity are not allowed")


@pytest.mark.parametrize(("where", "code", "detail"), [
    ("protocol value", "InvalidEvaluation", "invalid protocol: software.x is not valid Unicode (a lone surrogate)"),
    ("protocol key", "InvalidEvaluation", "invalid protocol: key '\\ud800' of software is not valid Unicode"),
    ("metrics key", "InvalidRequest", "invalid request: metrics: key '\\ud800' is not valid Unicode"),
])
def test_a_lone_surrogate_is_refused(server, repo, where, code, detail):
    # Python's JSON parser takes "\ud800"; stored, every later list of the adapter's evaluations was a 500
    ns, c, _ = repo
    body = {"protocol value": {**BASE, "protocol": {**PROTOCOL, "software": {"x": "\ud800"}}},
            "protocol key": {**BASE, "protocol": {**PROTOCOL, "software": {"\ud800": "x"}}},
            "metrics key": {**BASE, "metrics": {"\ud800": 1.0}}}[where]
    _refused(server, c, ns, json.dumps(body), 422, code, detail)
    assert c.get(f"/api/v1/adapters/{ns}/ev/evaluations").status_code == 200


def test_a_verification_of_another_adapters_evaluation_is_refused_like_a_missing_one(server, repo):
    ns, c, _ = repo
    assert push(c, ns, "other", "1.0.0", adapter_files(32)).status_code == 201
    theirs = _post(c, ns, {**BASE}, adapter="other").json()["id"]
    def detail(of: int) -> str:
        return f"verification.of: {ns}/ev has no evaluation {of} (GET /api/v1/adapters/{ns}/ev/evaluations lists them)"

    _refused(server, c, ns, {**BASE, "verification": {"of": theirs, "reproduced": True}}, 422,
             "InvalidEvaluation", detail(theirs))
    # the same answer as an id that names nothing: ids of other adapters' evaluations leak nothing
    missing = theirs + 10_000
    _refused(server, c, ns, {**BASE, "verification": {"of": missing, "reproduced": True}}, 422,
             "InvalidEvaluation", detail(missing))
    # and on the adapter it belongs to, the same id is accepted
    r = _post(c, ns, {**BASE, "verification": {"of": theirs, "reproduced": True}}, adapter="other")
    assert r.status_code == 201 and r.json()["verification"]["of"] == theirs


# -- migration 0007 ------------------------------------------------------------------------------------

def _row(table, **given) -> dict:
    """``given``, plus a plain value for every other required column of ``table`` (as reflected at 0006)."""
    row = dict(given)
    for col in table.columns:
        if col.name in row or col.nullable or col.server_default is not None or col.primary_key:
            continue
        kind = col.type
        row[col.name] = (False if isinstance(kind, Boolean) else 0 if isinstance(kind, Integer)
                         else utcnow() if isinstance(kind, DateTime) else {} if isinstance(kind, JSON) else "x")
    return row


def test_0007_keeps_the_evaluations_stored_before_it_with_nulls(empty_url):  # noqa: F811 (the imported fixture)
    engine = db.make_engine(normalize_database_url(empty_url))
    try:
        db.upgrade(engine, "0006")
        meta = MetaData()
        meta.reflect(engine)
        t = meta.tables
        with engine.begin() as conn:
            ns_id = conn.execute(t["namespace"].insert().values(_row(t["namespace"], name="old"))).inserted_primary_key[0]
            a_id = conn.execute(t["adapter"].insert().values(
                _row(t["adapter"], namespace_id=ns_id, name="legacy"))).inserted_primary_key[0]
            v_id = conn.execute(t["version"].insert().values(
                _row(t["version"], adapter_id=a_id, version="1.0.0", commit="c" * 40))).inserted_primary_key[0]
            e_id = conn.execute(t["evaluation"].insert().values(_row(
                t["evaluation"], version_id=v_id, dataset="sst2", dataset_sha256=SHA, metrics={"accuracy": 0.75},
                created_by="old"))).inserted_primary_key[0]
        assert "protocol" not in {c["name"] for c in inspect(engine).get_columns("evaluation")}

        db.upgrade(engine)
        with Session(engine) as session:
            out = evaluation_out(session.get(Evaluation, e_id), "1.0.0")
        assert (out.dataset, out.dataset_sha256, out.metrics) == ("sst2", SHA, {"accuracy": 0.75})
        assert (out.protocol, out.confusion_matrix, out.verification) == (None, None, None)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT protocol IS NULL AND confusion_matrix IS NULL AND verification IS NULL "
                                     "FROM evaluation WHERE id = :i"), {"i": e_id}).scalar()

        # and back down: the columns go, the row stays
        command.downgrade(db.alembic_config(engine), "0006")
        assert {"protocol", "confusion_matrix", "verification"}.isdisjoint(
            c["name"] for c in inspect(engine).get_columns("evaluation"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT dataset FROM evaluation WHERE id = :i"), {"i": e_id}).scalar() == "sst2"
    finally:
        engine.dispose()
