"""Admin bootstrap and the failed-authentication rate limit (each on its own server)."""

from __future__ import annotations

import re

import pytest

from tests.helpers.live_server import run_server
from tests.registry.factory import client

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
