"""What the outside fuzzer (tests/fuzz/test_schemathesis.py) found, each kept as a plain request.

Every case ran on a real server over SQLite and PostgreSQL; before its fix each one answered a
500, dropped the connection, or answered a status or body the OpenAPI document did not declare.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.registry.factory import adapter_files, client, push

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

JSON = {"Content-Type": "application/json"}


def _declared(doc: dict, method: str, template: str) -> dict:
    return doc["paths"][template][method.lower()]["responses"]


def _assert_error(r: httpx.Response, status: int, code: str, detail_part: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail", "code"} and body["code"] == code, body
    assert detail_part in body["detail"], body
    assert r.headers["X-Error-Code"] == code


@pytest.fixture
def rollout(user):
    """``(ns, client)`` of a fresh user whose adapter ``ro`` has an open rollout on ``prod``."""
    ns, c = user
    assert push(c, ns, "ro", "1.0.0", adapter_files(1), alias="prod").status_code == 201
    assert push(c, ns, "ro", "1.1.0", adapter_files(2), create=False).status_code == 201
    r = c.post(f"/api/v1/adapters/{ns}/ro/rollouts", json={"alias": "prod", "canary_version": "1.1.0", "weight": 10})
    assert r.status_code == 201, r.text
    return ns, c


# --- the document did not declare what the server answers --------------------------------------

@pytest.mark.parametrize(("method", "path", "template", "status"), [
    ("GET", "/api/v1/whoami", "/api/v1/whoami", 401),
    ("POST", "/api/v1/users", "/api/v1/users", 401),
    ("GET", "/api/v1/adapters/nobody/nothing", "/api/v1/adapters/{ns}/{name}", 404),
    ("GET", "/api/v1/namespaces/nobody", "/api/v1/namespaces/{ns}", 404),
    ("PUT", f"/api/v1/blobs/{'0' * 64}", "/api/v1/blobs/{sha256}", 401),
    ("GET", "/api/models/nobody/nothing", "/api/models/{ns}/{name}", 404),
])
def test_error_statuses_are_declared_with_the_error_schema(anon, method, path, template, status):
    r = anon.request(method, path, json={"name": "x"} if method == "POST" else None)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"detail", "code"}
    declared = _declared(anon.get("/api/v1/openapi.json").json(), method, template)
    assert declared[str(status)]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}


def test_422_is_declared_as_our_error_shape_not_fastapis(anon):
    doc = anon.get("/api/v1/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    r = anon.get("/api/v1/adapters", params={"limit": "many"})
    _assert_error(r, 422, "InvalidRequest", "limit")
    assert _declared(doc, "GET", "/api/v1/adapters")["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOut"}


def test_file_routes_declare_bytes_ranges_and_not_modified(anon):
    responses = _declared(anon.get("/api/v1/openapi.json").json(), "GET", "/{ns}/{name}/resolve/{rev}/{path}")
    assert list(responses["200"]["content"]) == ["application/octet-stream"]
    assert {"206", "304", "404", "416"} <= set(responses)


def test_operation_ids_are_unique_and_stable(anon):
    # GET and HEAD of one api_route shared one operationId, picked by set order (per process)
    doc = anon.get("/api/v1/openapi.json").json()
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    head = _declared(doc, "HEAD", "/{ns}/{name}/resolve/{rev}/{path}")
    assert "200" in head and doc["paths"]["/{ns}/{name}/resolve/{rev}/{path}"]["head"]["operationId"].endswith("_head")


# --- bodies that are not UTF-8 ------------------------------------------------------------------

def test_non_utf8_json_body_is_422_like_any_malformed_body(admin):
    r = admin.post("/api/v1/users", content=b"'\x1f\xff\x07", headers=JSON)
    _assert_error(r, 422, "InvalidRequest", "not UTF-8")
    r = admin.post("/api/v1/users", content=b"{not json", headers=JSON)
    _assert_error(r, 422, "InvalidRequest", "JSON")


# --- NUL characters: PostgreSQL text cannot hold them ------------------------------------------

@pytest.mark.parametrize(("method", "path", "params", "body"), [
    ("GET", "/api/v1/adapters", {"q": "a\x00b"}, None),
    ("GET", "/api/v1/adapters", {"tag": "\x00"}, None),
    ("GET", "/api/v1/adapters", {"base_model": "gpt\x00"}, None),
    ("POST", "/api/v1/adapters", None, {"namespace": "{ns}", "name": "nul", "description": "x\x00y"}),
    ("PATCH", "/api/v1/adapters/{ns}/ro", None, {"tags": ["a\x00"]}),
    ("POST", "/api/v1/adapters/{ns}/ro/versions/1.0.0/yank", None, {"reason": "bad\x00"}),
    ("POST", "/api/v1/adapters/{ns}/ro/versions/1.0.0/evaluations", None, {"dataset": "d\x00", "metrics": {}}),
    ("GET", "/api/v1/adapters/{ns}/ro/aliases/pr%00d/history", None, None),
    ("POST", "/api/v1/tokens", None, {"user": "\x00", "namespaces": ["*"]}),
])
def test_nul_characters_are_422_on_every_database(rollout, method, path, params, body):
    ns, c = rollout
    if body and body.get("namespace") == "{ns}":
        body = {**body, "namespace": ns}
    before = c.get(f"/api/v1/adapters/{ns}/ro").json()
    r = c.request(method, path.replace("{ns}", ns), params=params, json=body)
    _assert_error(r, 422, "InvalidRequest", "NUL (\\x00) characters are not allowed")
    assert c.get(f"/api/v1/adapters/{ns}/ro").json() == before
    assert c.get(f"/api/v1/adapters/{ns}/ro/versions/1.0.0").json()["yanked"] is False
    assert c.get(f"/api/v1/adapters/{ns}/nul").status_code == 404


def test_nul_in_a_json_key_is_stored_escaped_alike(rollout):
    # JSON columns hold it as the escape \u0000, which both databases accept: no refusal needed
    ns, c = rollout
    r = c.post(f"/api/v1/adapters/{ns}/ro/versions/1.0.0/evaluations", json={"dataset": "d", "metrics": {"a\x00": 1}})
    assert r.status_code == 201 and r.json()["metrics"] == {"a\x00": 1.0}


def test_nul_in_an_hf_revision_or_file_is_the_hf_404(rollout):
    ns, c = rollout  # (httpx refuses a raw NUL in a URL: sent percent-encoded, as any client would)
    commit = c.get(f"/api/v1/adapters/{ns}/ro/versions/1.0.0").json()["commit"]
    r = c.get(f"/api/models/{ns}/ro/revision/ma%00in")
    _assert_error(r, 404, "RevisionNotFound", "no version or alias")
    r = c.get(f"/{ns}/ro/resolve/ma%00in/adapter_config.json")
    _assert_error(r, 404, "RevisionNotFound", "no version or alias")
    for method in ("GET", "HEAD"):
        r = c.request(method, f"/{ns}/ro/resolve/1.0.0/adapter_config.json%00")
        assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound"
        assert r.headers["X-Repo-Commit"] == commit


# --- numbers beyond what the database column holds ----------------------------------------------

@pytest.mark.parametrize("token_id", [2**70, 2**40, -(2**70), 0])
def test_token_ids_out_of_column_range_are_422(admin, token_id):
    r = admin.delete(f"/api/v1/tokens/{token_id}")
    _assert_error(r, 422, "InvalidRequest", "path.token_id")


@pytest.mark.parametrize("cursor", ["-5", str(2**63), str(10**30)])
@pytest.mark.parametrize("sort", ["newest", "metric:accuracy"])
def test_cursors_outside_0_to_2_63_are_422(anon, cursor, sort):
    r = anon.get("/api/v1/adapters", params={"cursor": cursor, "sort": sort})
    _assert_error(r, 422, "InvalidRequest", f"bad cursor {cursor!r}")


def test_outcome_counters_are_bounded_and_cannot_poison_a_rollout(rollout):
    ns, c = rollout
    url = f"/api/v1/adapters/{ns}/ro/rollouts/prod"
    r = c.post(f"{url}/outcomes", json={"batches": [{"arm": "stable", "requests": 5, "latency_sum": 1e308}]})
    _assert_error(r, 422, "InvalidRequest", "batches.0.latency_sum")
    r = c.post(f"{url}/outcomes", json={"batches": [{"arm": "canary", "requests": 2**70}]})
    _assert_error(r, 422, "InvalidRequest", "batches.0.requests")
    # before: the first report was stored, and every later read of the rollout overflowed (500)
    r = c.get(url)
    assert r.status_code == 200 and r.json()["arms"]["stable"]["requests"] == 0


@pytest.mark.parametrize(("path", "raw", "where"), [
    ("versions/1.0.0/evaluations", '{"dataset": "d", "metrics": {"a": Infinity}}', "metrics.a"),
    ("versions/1.0.0/evaluations", '{"dataset": "d", "metrics": {"a": NaN}}', "metrics.a"),
    ("rollouts/prod/step", '{"weight": NaN}', "weight"),
    ("rollouts/prod/outcomes", '{"batches": [{"arm": "stable", "requests": 5, "quality_sum": NaN}]}',
     "batches.0.quality_sum"),
    ("rollouts/prod/outcomes", '{"batches": [{"arm": "stable", "requests": 5, "quality_sum": -Infinity, '
     '"quality_n": 1}]}', "batches.0.quality_sum"),
])
def test_nan_and_infinity_are_refused(rollout, path, raw, where):
    ns, c = rollout
    r = c.post(f"/api/v1/adapters/{ns}/ro/{path}", content=raw, headers=JSON)
    _assert_error(r, 422, "InvalidRequest", f"{where}: Input should be a finite number")
    assert c.get(f"/api/v1/adapters/{ns}/ro/evaluations").json() == []
    assert c.get(f"/api/v1/adapters/{ns}/ro/rollouts/prod").status_code == 200


# --- text longer than its column ----------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body", "field", "limit"), [
    ("POST", "/api/v1/tokens", {"user": "{ns}", "scope": "read", "namespaces": ["{ns}"], "name": "n" * 201},
     "name", 200),
    ("POST", "/api/v1/adapters", {"namespace": "{ns}", "name": "long", "task": "t" * 201}, "task", 200),
    ("POST", "/api/v1/adapters", {"namespace": "{ns}", "name": "long", "method": "m" * 65}, "method", 64),
    ("POST", "/api/v1/adapters", {"namespace": "{ns}", "name": "long", "base_model": "b" * 301}, "base_model", 300),
    ("POST", "/api/v1/adapters", {"namespace": "{ns}", "name": "long", "license": "l" * 101}, "license", 100),
    ("PATCH", "/api/v1/adapters/{ns}/ro", {"task": "t" * 201}, "task", 200),
    ("POST", "/api/v1/adapters/{ns}/ro/versions/1.0.0/evaluations", {"dataset": "d" * 301, "metrics": {}},
     "dataset", 300),
    ("POST", "/api/v1/adapters/{ns}/ro/versions", {"version": "1.0.0-" + ".".join(["a" * 60] * 6), "files": []},
     "version", 300),
])
def test_text_longer_than_its_column_is_422(rollout, method, path, body, field, limit):
    ns, c = rollout
    body = {k: ([ns] if v == ["{ns}"] else ns if v == "{ns}" else v) for k, v in body.items()}
    r = c.request(method, path.replace("{ns}", ns), json=body)
    _assert_error(r, 422, "InvalidRequest", f"{field}: String should have at most {limit} characters")
    assert c.get(f"/api/v1/adapters/{ns}/long").status_code == 404
    assert c.get(f"/api/v1/adapters/{ns}/ro").json()["task"] == ""


# --- control characters in an error message -----------------------------------------------------

def test_control_characters_in_an_error_never_reach_a_header(rollout):
    # the message names the offending key; a raw \x01 in X-Error-Message made uvicorn drop the response
    ns, c = rollout
    r = c.post(f"/api/v1/adapters/{ns}/ro/versions/1.0.0/evaluations",
               json={"dataset": "d", "metrics": {"a\x01b": "not a number"}})
    _assert_error(r, 422, "InvalidRequest", "metrics.a\x01b")
    assert "\x01" not in r.headers["X-Error-Message"] and "metrics.a b" in r.headers["X-Error-Message"]


def test_a_fresh_user_namespace_still_works_after_the_refusals(server):
    # guard for the NUL check: ordinary JSON and upload bodies are untouched by it
    with client(server.url, server.admin_token) as admin:
        name = f"f{uuid.uuid4().hex[:8]}"
        assert admin.post("/api/v1/users", json={"name": name}).status_code == 201
        r = push(admin, name, "plain", "1.0.0", adapter_files(3), alias="stable")
        assert r.status_code == 201, r.text
