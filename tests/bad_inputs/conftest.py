"""One real registry for the whole catalogue, seeded with what its refusals aim at, and the bad
adapter folders the client and the CLI are asked to push.

One server, not one per module: starting one costs seconds, and sharing it is safe because every
case asserts that it changed nothing (the few that upload blobs the server then refuses check
that those are the only change). The failed-authentication limit is high enough for every bad
token the catalogue sends from 127.0.0.1; the rate-limit case trips it from an address of its own.

The seed: user ``alice`` (a write token on her namespace, plus a read-only, an expired and a
revoked token), user ``bob`` (a write token on his own namespace only), ``alice/target@1.0.0``
with alias ``stable``, and ``secret/hidden@1.0.0`` in the private namespace ``secret``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bad_inputs.support import AUTH_FAIL_LIMIT, FOLDERS, MAX_UPLOAD, World
from tests.client.fixtures import isolated_home  # noqa: F401 - no caller's token or home leaks in
from tests.helpers.live_server import run_server
from tests.registry.factory import adapter_files, client, make_user, push


def _token(admin, user: str, **body) -> tuple[str, int]:
    r = admin.post("/api/v1/tokens", json={"user": user, "namespaces": [user], **body})
    assert r.status_code == 201, r.text
    return r.json()["token"], r.json()["id"]


@pytest.fixture(scope="package")
def world(tmp_path_factory) -> Iterator[World]:
    env = {"ADAPTERHUB_MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "ADAPTERHUB_AUTH_FAIL_LIMIT": str(AUTH_FAIL_LIMIT),
           "ADAPTERHUB_AUTH_FAIL_WINDOW": "60"}
    with run_server(tmp_path_factory.mktemp("registry"), env=env) as srv, client(srv.url, srv.admin_token) as admin:
        tokens = {"write": make_user(admin, "alice"), "other": make_user(admin, "bob")}
        tokens["read"], _ = _token(admin, "alice", scope="read")
        tokens["expired"], _ = _token(admin, "alice", scope="write", expires_at="2000-01-01T00:00:00Z")
        tokens["revoked"], revoked_id = _token(admin, "alice", scope="write")
        assert admin.delete(f"/api/v1/tokens/{revoked_id}").status_code == 204
        w = World(srv, admin, tokens)
        assert push(w.client("write"), "alice", "target", "1.0.0", adapter_files(1), alias="stable").status_code == 201
        assert admin.post("/api/v1/namespaces", json={"name": "secret", "private": True}).status_code == 201
        assert push(admin, "secret", "hidden", "1.0.0", adapter_files(2)).status_code == 201
        yield w
        w.close()
        assert "Traceback" not in srv.log(), srv.log()  # no refusal may have been a crash


@pytest.fixture(scope="package")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Every folder of `FOLDERS`, made once."""
    root = tmp_path_factory.mktemp("folders")
    return {key: make(root) for key, make in FOLDERS.items()}
