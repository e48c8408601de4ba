"""Admin bootstrap and the failed-authentication rate limit (each on its own server); listing users,
tokens and namespaces (on the shared SQLite and PostgreSQL servers)."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.helpers.live_server import run_server
from tests.registry.factory import client, make_user

TOKEN_LINE = re.compile(r"adapterhub admin token \(shown once, store it\): (ah_\S+)")


@pytest.mark.slow
def test_generated_admin_token_is_printed_once_and_persists(tmp_path):
    with run_server(tmp_path, admin_token="") as srv:
        found = TOKEN_LINE.findall(srv.log())
        assert len(found) == 1
        token = found[0]
        me = client(srv.url, token).get("/api/v1/whoami").json()
        assert me == {"user": "admin", "is_admin": True, "scopes": [{"scope": "admin", "namespace": "*"}]}
    with run_server(tmp_path, admin_token="") as srv:
        assert TOKEN_LINE.findall(srv.log()) == []  # shown once: not again on a restart
        assert client(srv.url, token).post("/api/v1/users", json={"name": "bob"}).status_code == 201


@pytest.mark.slow
def test_failed_auth_is_rate_limited_per_client(tmp_path):
    env = {"ADAPTERHUB_AUTH_FAIL_LIMIT": "3", "ADAPTERHUB_AUTH_FAIL_WINDOW": "60"}
    with run_server(tmp_path, env=env) as srv:
        bad = client(srv.url, "ah_0000_wrong")
        assert [bad.get("/api/v1/whoami").status_code for _ in range(3)] == [401, 401, 401]
        r = client(srv.url, srv.admin_token).get("/api/v1/whoami")
        assert r.status_code == 429 and r.json() == {
            "code": "RateLimited", "detail": "too many failed authentications from this address; retry later"}
        assert r.headers["retry-after"] == "60"
        assert client(srv.url).get("/api/v1/adapters").status_code == 200  # anonymous reads still work


# -- listing users, tokens and namespaces: each caller sees what it may, never a secret ------------
TOKEN_FIELDS = {"id", "user", "name", "scope", "namespaces", "created_at", "expires_at", "revoked_at", "current"}


def _fresh_user(admin, namespaces=("*",)) -> tuple[str, str]:
    name = f"u{uuid.uuid4().hex[:10]}"
    return name, make_user(admin, name, namespaces=list(namespaces))


def test_list_users_is_for_admins_only(server, admin, anon):
    name, token = _fresh_user(admin)
    r = admin.get("/api/v1/users")
    assert r.status_code == 200, r.text
    rows = {u["name"]: u for u in r.json()}
    assert rows["admin"]["is_admin"] is True and rows[name]["is_admin"] is False
    assert set(rows[name]) == {"name", "is_admin", "created_at"}
    assert [u["name"] for u in r.json()] == sorted(rows)
    r = client(server.url, token).get("/api/v1/users")
    assert (r.status_code, r.json()) == (403, {"code": "Forbidden", "detail": "only an admin may list users"})
    assert anon.get("/api/v1/users").status_code == 401


def test_list_tokens_shows_the_callers_tokens_within_reach_and_never_a_secret(server, admin):
    name, write = _fresh_user(admin, namespaces=[])  # make_user's default: [name]
    me = client(server.url, write)
    read = me.post("/api/v1/tokens", json={"user": name, "scope": "read", "namespaces": [name], "name": "ci"})
    assert read.status_code == 201, read.text
    rows = me.get("/api/v1/tokens").json()
    assert [(t["scope"], t["name"], t["current"]) for t in rows] == [("write", "", True), ("read", "ci", False)]
    assert all(set(t) == TOKEN_FIELDS for t in rows)
    assert write not in str(rows) and read.json()["token"] not in str(rows)
    assert rows[1]["user"] == name and rows[1]["namespaces"] == [name] and rows[1]["revoked_at"] is None
    # a read token sees itself, not the write token it cannot revoke
    reader = client(server.url, read.json()["token"])
    assert [(t["scope"], t["current"]) for t in reader.get("/api/v1/tokens").json()] == [("read", True)]
    assert me.delete(f"/api/v1/tokens/{read.json()['id']}").status_code == 204
    again = me.get("/api/v1/tokens").json()
    assert again[1]["revoked_at"] is not None and again[0]["revoked_at"] is None


def test_only_admins_list_another_users_tokens(server, admin):
    name, token = _fresh_user(admin)
    r = client(server.url, token).get("/api/v1/tokens", params={"user": "admin"})
    assert (r.status_code, r.json()["detail"]) == (403, "only an admin may list another user's tokens")
    assert client(server.url, token).get("/api/v1/tokens", params={"user": name}).status_code == 200
    r = admin.get("/api/v1/tokens", params={"user": name})
    assert r.status_code == 200 and [(t["user"], t["current"]) for t in r.json()] == [(name, False)]
    r = admin.get("/api/v1/tokens", params={"user": "nobody-here"})
    assert (r.status_code, r.json()) == (404, {"code": "NotFound", "detail": "no user 'nobody-here'"})
    assert admin.get("/api/v1/tokens", params={"user": "Bad"}).status_code == 422


def test_list_namespaces_shows_public_ones_and_private_ones_only_to_their_readers(server, admin, anon):
    owner, owner_token = _fresh_user(admin)
    other, other_token = _fresh_user(admin)
    mine = client(server.url, owner_token)
    assert mine.post("/api/v1/namespaces", json={"name": f"{owner}-hidden", "private": True}).status_code == 201

    def names(c) -> list[str]:
        r = c.get("/api/v1/namespaces")
        assert r.status_code == 200, r.text
        assert all(set(n) == {"name", "private", "owner", "created_at"} for n in r.json())
        return [n["name"] for n in r.json()]

    assert f"{owner}-hidden" in names(mine) and f"{owner}-hidden" in names(admin)
    for outsider in (anon, client(server.url, other_token)):
        seen = names(outsider)
        assert owner in seen and other in seen and f"{owner}-hidden" not in seen
    assert names(admin) == sorted(names(admin))
    row = next(n for n in mine.get("/api/v1/namespaces").json() if n["name"] == f"{owner}-hidden")
    assert row["private"] is True and row["owner"] == owner
