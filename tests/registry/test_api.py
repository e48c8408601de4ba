"""The REST API end to end against a real uvicorn, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from tests.registry.factory import adapter_files, client, make_user, push, sha


def test_health_and_openapi(anon):
    assert anon.get("/api/v1/health").json() == {"status": "ok"}
    doc = anon.get("/api/v1/openapi.json").json()
    assert "/api/v1/adapters/{ns}/{name}/versions" in doc["paths"]


def test_whoami_reports_user_and_scopes(user, anon, admin):
    name, c = user
    assert c.get("/api/v1/whoami").json() == {
        "user": name, "is_admin": False, "scopes": [{"scope": "write", "namespace": name}]}
    assert admin.get("/api/v1/whoami").json()["is_admin"] is True
    r = anon.get("/api/v1/whoami")
    assert r.status_code == 401 and r.json()["code"] == "Unauthorized"


def test_publish_then_read_version(user, anon):
    ns, c = user
    files = adapter_files(1)
    r = push(c, ns, "sent", "1.0.0", files, alias="stable")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["version"] == "1.0.0" and len(out["commit"]) == 40 and out["created_by"] == ns
    assert out["size"] == sum(len(b) for b in files.values())
    assert out["config"]["peft_type"] == "LORA" and out["card"]["task"] == "sentiment"
    assert sorted(f["path"] for f in out["files"]) == sorted(files)
    got = anon.get(f"/api/v1/adapters/{ns}/sent/versions/1.0.0").json()
    assert got == out
    summary = anon.get(f"/api/v1/adapters/{ns}/sent").json()
    assert summary["latest_version"] == "1.0.0" and summary["aliases"] == {"stable": "1.0.0"}
    assert summary["size"] == out["size"]


def test_republish_is_409_and_changes_nothing(user):
    ns, c = user
    assert push(c, ns, "imm", "1.0.0", adapter_files(1)).status_code == 201
    before = c.get(f"/api/v1/adapters/{ns}/imm/versions/1.0.0").json()
    r = push(c, ns, "imm", "1.0.0", adapter_files(2))
    assert r.status_code == 409
    assert r.json() == {"code": "VersionExists",
                        "detail": "version 1.0.0 of 'imm' exists; versions are immutable"}
    assert c.get(f"/api/v1/adapters/{ns}/imm/versions/1.0.0").json() == before


def test_versions_listed_newest_first_in_semver_order(user):
    ns, c = user
    for v in ["1.0.0", "1.10.0", "1.2.0", "2.0.0-rc.1", "2.0.0"]:
        assert push(c, ns, "order", v, adapter_files(hash(v) % 1000)).status_code == 201
    got = [v["version"] for v in c.get(f"/api/v1/adapters/{ns}/order/versions").json()]
    assert got == ["2.0.0", "2.0.0-rc.1", "1.10.0", "1.2.0", "1.0.0"]


def test_file_download_headers_range_and_etag(user, anon):
    ns, c = user
    files = adapter_files(3)
    push(c, ns, "dl", "1.0.0", files)
    body = files["adapter_model.safetensors"]
    url = f"/api/v1/adapters/{ns}/dl/versions/1.0.0/files/adapter_model.safetensors"
    r = anon.get(url)
    assert r.status_code == 200 and r.content == body
    assert r.headers["etag"] == f'"{sha(body)}"'
    assert r.headers["content-disposition"] == 'attachment; filename="adapter_model.safetensors"'
    assert r.headers["x-content-type-options"] == "nosniff"
    r = anon.get(url, headers={"Range": "bytes=10-"})
    assert r.status_code == 206 and r.content == body[10:]
    assert r.headers["content-range"] == f"bytes 10-{len(body) - 1}/{len(body)}"
    r = anon.get(url, headers={"Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == body[:4]
    r = anon.get(url, headers={"Range": f"bytes={len(body)}-"})
    assert r.status_code == 416
    r = anon.get(url, headers={"If-None-Match": f'"{sha(body)}"'})
    assert r.status_code == 304 and r.content == b""
    r = anon.head(url)
    assert r.status_code == 200 and r.headers["content-length"] == str(len(body))
    r = anon.get(f"/api/v1/adapters/{ns}/dl/versions/1.0.0/files/nope.txt")
    assert r.status_code == 404 and r.json()["code"] == "EntryNotFound"


def test_download_counted_once_per_pull(user, anon):
    ns, c = user
    push(c, ns, "cnt", "1.0.0", adapter_files(4))
    base = f"/api/v1/adapters/{ns}/cnt/versions/1.0.0/files/"
    for _ in range(2):
        for path in ["adapter_config.json", "adapter_model.safetensors", "adapterhub.json"]:
            assert anon.get(base + path).status_code == 200
    assert anon.get(f"/api/v1/adapters/{ns}/cnt").json()["downloads"] == 2


def test_aliases_move_and_history_answers_point_in_time(user):
    ns, c = user
    push(c, ns, "al", "1.0.0", adapter_files(5), alias="stable")
    push(c, ns, "al", "1.1.0", adapter_files(6))
    t_between = datetime.now(UTC)
    time.sleep(0.05)
    r = c.put(f"/api/v1/adapters/{ns}/al/aliases/stable", json={"version": "1.1.0"})
    assert r.status_code == 200 and r.json() == {"alias": "stable", "version": "1.1.0"}
    assert c.put(f"/api/v1/adapters/{ns}/al/aliases/canary", json={"version": "1.0.0"}).status_code == 200
    assert c.get(f"/api/v1/adapters/{ns}/al/aliases").json() == {"canary": "1.0.0", "stable": "1.1.0"}
    hist = c.get(f"/api/v1/adapters/{ns}/al/aliases/stable/history").json()
    assert [h["version"] for h in hist] == ["1.0.0", "1.1.0"]
    assert hist[0]["to"] == hist[1]["from"] and hist[1]["to"] is None and hist[0]["actor"] == ns
    at = c.get(f"/api/v1/adapters/{ns}/al/aliases/stable/history", params={"at": t_between.isoformat()}).json()
    assert [h["version"] for h in at] == ["1.0.0"]
    assert c.delete(f"/api/v1/adapters/{ns}/al/aliases/canary").status_code == 204
    assert c.get(f"/api/v1/adapters/{ns}/al/aliases").json() == {"stable": "1.1.0"}
    r = c.put(f"/api/v1/adapters/{ns}/al/aliases/stable", json={"version": "9.9.9"})
    assert r.status_code == 404 and r.json()["code"] == "RevisionNotFound"
    actions = [e["action"] for e in c.get(f"/api/v1/adapters/{ns}/al/audit").json()]
    assert actions == ["adapter.create", "version.publish", "alias.set", "version.publish", "alias.set",
                       "alias.set", "alias.delete"]


def test_resolve_reference_forms(user):
    ns, c = user
    push(c, ns, "rs", "1.0.0", adapter_files(7))
    push(c, ns, "rs", "1.1.0", adapter_files(8))
    url = f"/api/v1/adapters/{ns}/rs/resolve"
    assert c.get(url).json()["version"] == "1.1.0"  # no stable alias: the newest
    c.put(f"/api/v1/adapters/{ns}/rs/aliases/stable", json={"version": "1.0.0"})
    out = c.get(url, params={"ref": ""}).json()
    assert out["version"] == "1.0.0" and out["arm"] == "stable" and out["rollout_id"] is None
    assert c.get(url, params={"ref": "@1.1.0"}).json()["version"] == "1.1.0"
    assert c.get(url, params={"ref": ":stable"}).json()["version"] == "1.0.0"
    r = c.get(url, params={"ref": ":nope"})
    assert r.status_code == 404 and r.json()["code"] == "RevisionNotFound"


def test_yank_hides_from_latest_but_keeps_exact_pins(user):
    ns, c = user
    push(c, ns, "yk", "1.0.0", adapter_files(9))
    push(c, ns, "yk", "1.1.0", adapter_files(10))
    r = c.post(f"/api/v1/adapters/{ns}/yk/versions/1.1.0/yank", json={"reason": "bad accuracy"})
    assert r.status_code == 200 and r.json()["yanked"] and r.json()["yank_reason"] == "bad accuracy"
    assert c.get(f"/api/v1/adapters/{ns}/yk").json()["latest_version"] == "1.0.0"
    assert c.get(f"/api/v1/adapters/{ns}/yk/resolve").json()["version"] == "1.0.0"
    assert c.get(f"/api/v1/adapters/{ns}/yk/resolve", params={"ref": "@1.1.0"}).json()["version"] == "1.1.0"
    assert c.post(f"/api/v1/adapters/{ns}/yk/versions/1.1.0/unyank").json()["yanked"] is False
    assert c.get(f"/api/v1/adapters/{ns}/yk").json()["latest_version"] == "1.1.0"


def test_evaluations_posted_listed_and_in_summary(user):
    ns, c = user
    push(c, ns, "ev", "1.0.0", adapter_files(11))
    body = {"dataset": "sst2", "dataset_sha256": "ab" * 32, "metrics": {"accuracy": 0.9}}
    r = c.post(f"/api/v1/adapters/{ns}/ev/versions/1.0.0/evaluations", json=body)
    assert r.status_code == 201
    ev = r.json()
    assert ev["version"] == "1.0.0" and ev["metrics"] == {"accuracy": 0.9} and ev["created_by"] == ns
    c.post(f"/api/v1/adapters/{ns}/ev/versions/1.0.0/evaluations", json={**body, "metrics": {"accuracy": 0.95}})
    assert [e["metrics"]["accuracy"] for e in c.get(f"/api/v1/adapters/{ns}/ev/evaluations").json()] == [0.9, 0.95]
    assert c.get(f"/api/v1/adapters/{ns}/ev").json()["metrics"] == {"accuracy": 0.95}
    assert len(c.get(f"/api/v1/adapters/{ns}/ev/versions/1.0.0").json()["evaluations"]) == 2


def test_search_filters_sort_and_pagination(server, admin):
    ns = f"s{uuid.uuid4().hex[:8]}"
    token = make_user(admin, ns)
    c = client(server.url, token)
    words = ["zero", "one", "two", "three", "four"]
    for i in range(5):
        r = c.post("/api/v1/adapters", json={
            "namespace": ns, "name": f"a{i}", "description": f"Sentiment model {words[i]}", "task": "cls",
            "method": "lora" if i % 2 == 0 else "ia3", "base_model": "tiny-llama", "tags": ["en", f"t{i}"]})
        assert r.status_code == 201, r.text
    push(c, ns, "a1", "1.0.0", adapter_files(20), create=False)
    c.post(f"/api/v1/adapters/{ns}/a1/versions/1.0.0/evaluations", json={"dataset": "d", "metrics": {"f1": 0.5}})
    push(c, ns, "a3", "1.0.0", adapter_files(21), create=False)
    c.post(f"/api/v1/adapters/{ns}/a3/versions/1.0.0/evaluations", json={"dataset": "d", "metrics": {"f1": 0.7}})
    c.get(f"/api/v1/adapters/{ns}/a1/versions/1.0.0/files/adapter_config.json")

    def names(**params):
        return [a["name"] for a in c.get("/api/v1/adapters", params={"namespace": ns, **params}).json()["items"]]

    assert names() == ["a4", "a3", "a2", "a1", "a0"]
    assert names(method="lora") == ["a4", "a2", "a0"]
    assert names(tag="t3") == ["a3"]
    assert names(q="SENTIMENT two") == ["a2"]
    assert names(q=ns[:5] + " model four") == ["a4"]
    assert names(sort="downloads")[0] == "a1"
    assert names(sort="metric:f1")[:2] == ["a3", "a1"]
    page1 = c.get("/api/v1/adapters", params={"namespace": ns, "limit": 2}).json()
    page2 = c.get("/api/v1/adapters", params={"namespace": ns, "limit": 2, "cursor": page1["next_cursor"]}).json()
    page3 = c.get("/api/v1/adapters", params={"namespace": ns, "limit": 2, "cursor": page2["next_cursor"]}).json()
    assert [a["name"] for a in page1["items"] + page2["items"] + page3["items"]] == ["a4", "a3", "a2", "a1", "a0"]
    assert page3["next_cursor"] is None
    r = c.get("/api/v1/adapters", params={"sort": "bogus"})
    assert r.status_code == 422 and r.json()["code"] == "InvalidRequest"


def test_patch_updates_metadata(user):
    ns, c = user
    c.post("/api/v1/adapters", json={"namespace": ns, "name": "pt"})
    r = c.patch(f"/api/v1/adapters/{ns}/pt", json={"description": "new", "tags": ["x", "y"], "license": "mit"})
    assert r.status_code == 200
    assert (r.json()["description"], r.json()["tags"], r.json()["license"]) == ("new", ["x", "y"], "mit")


def test_private_namespace_is_404_for_outsiders_everywhere(server, admin, anon):
    owner = f"p{uuid.uuid4().hex[:8]}"
    token = make_user(admin, owner, namespaces=["*"])
    c = client(server.url, token)
    secret_ns = owner + "-secret"
    assert c.post("/api/v1/namespaces", json={"name": secret_ns, "private": True}).status_code == 201
    assert push(c, secret_ns, "hidden", "1.0.0", adapter_files(30), alias="stable").status_code == 201
    outsider = client(server.url, make_user(admin, f"o{uuid.uuid4().hex[:8]}"))
    paths = [f"/api/v1/namespaces/{secret_ns}", f"/api/v1/adapters/{secret_ns}/hidden",
             f"/api/v1/adapters/{secret_ns}/hidden/versions", f"/api/v1/adapters/{secret_ns}/hidden/versions/1.0.0",
             f"/api/v1/adapters/{secret_ns}/hidden/versions/1.0.0/files/adapter_config.json",
             f"/api/v1/adapters/{secret_ns}/hidden/aliases", f"/api/v1/adapters/{secret_ns}/hidden/resolve",
             f"/api/v1/adapters/{secret_ns}/hidden/audit", f"/api/models/{secret_ns}/hidden",
             f"/{secret_ns}/hidden/resolve/main/adapter_config.json"]
    for who in (anon, outsider):
        for p in paths:
            r = who.get(p)
            assert r.status_code == 404, (p, r.status_code)
            assert r.headers["x-error-code"] == "RepoNotFound", p
        r = who.put(f"/api/v1/adapters/{secret_ns}/hidden/aliases/x", json={"version": "1.0.0"})
        assert r.status_code in (401, 404) and r.status_code != 403
        found = who.get("/api/v1/adapters", params={"q": "hidden", "namespace": secret_ns}).json()["items"]
        assert found == []
    assert all(c.get(p).status_code == 200 for p in paths)
    assert [a["name"] for a in c.get("/api/v1/adapters", params={"namespace": secret_ns}).json()["items"]] == [
        "hidden"]
    assert admin.get(f"/api/v1/adapters/{secret_ns}/hidden").status_code == 200


def test_write_needs_write_scope_on_that_namespace(server, admin, user):
    ns, c = user
    reader = client(server.url, make_user(admin, f"r{uuid.uuid4().hex[:8]}", scope="read", namespaces=["*"]))
    r = reader.post("/api/v1/adapters", json={"namespace": ns, "name": "x"})
    assert r.status_code == 403 and r.json() == {
        "code": "Forbidden", "detail": f"your token has no write scope on namespace {ns!r}"}
    other_ns, other = f"w{uuid.uuid4().hex[:8]}", None
    other = client(server.url, make_user(admin, other_ns))
    assert other.post("/api/v1/adapters", json={"namespace": ns, "name": "x"}).status_code == 403
    r = client(server.url).post("/api/v1/adapters", json={"namespace": ns, "name": "x"})
    assert r.status_code == 401
    assert c.get(f"/api/v1/adapters/{ns}/x").status_code == 404


def test_token_expiry_and_revocation(server, admin):
    name = f"t{uuid.uuid4().hex[:8]}"
    make_user(admin, name)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = admin.post("/api/v1/tokens", json={"user": name, "scope": "read", "namespaces": [name], "expires_at": past})
    expired = r.json()["token"]
    assert client(server.url, expired).get("/api/v1/whoami").status_code == 401
    r = admin.post("/api/v1/tokens", json={"user": name, "scope": "write", "namespaces": [name], "name": "ci"})
    tid, tok = r.json()["id"], r.json()["token"]
    assert tok.startswith("ah_")
    c = client(server.url, tok)
    assert c.get("/api/v1/whoami").status_code == 200
    # a user may mint a narrower token for themselves, not a wider one
    r = c.post("/api/v1/tokens", json={"user": name, "scope": "admin", "namespaces": [name]})
    assert r.status_code == 403
    r = c.post("/api/v1/tokens", json={"user": name, "scope": "read", "namespaces": [name]})
    assert r.status_code == 201
    assert c.delete(f"/api/v1/tokens/{tid}").status_code == 204
    r = c.get("/api/v1/whoami")
    assert r.status_code == 401 and r.json()["code"] == "Unauthorized"
    assert r.json()["detail"].startswith(f"token {tok.split('_')[1]} was revoked at ")


def test_only_admin_creates_users(user):
    _ns, c = user
    r = c.post("/api/v1/users", json={"name": "mallory"})
    assert r.status_code == 403 and r.json()["code"] == "Forbidden"


def test_unicode_file_names_download_with_rfc5987_disposition(user, anon):
    ns, c = user
    files = {**adapter_files(12), "docs/ünï.md": "héllo".encode()}
    assert push(c, ns, "uni", "1.0.0", files).status_code == 201
    r = anon.get(f"/api/v1/adapters/{ns}/uni/versions/1.0.0/files/docs/ünï.md")
    assert r.status_code == 200 and r.content == "héllo".encode()
    assert r.headers["content-disposition"] == "attachment; filename=\"_n_.md\"; filename*=UTF-8''%C3%BCn%C3%AF.md"
