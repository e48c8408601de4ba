"""Token minting and revocation (SECURITY_FINDINGS D1, D4, D8, D13), on SQLite and PostgreSQL.

One rule: a user's token makes or revokes only tokens within its own reach (scope, namespaces,
lifetime); ``"*"`` is the namespaces the user owns, looked up, never "any name". Every refusal is
checked for its status, code and message, and for having written nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from tests.helpers.snapshots import assert_still, database_state
from tests.registry.factory import adapter_files, client, push

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module


def _mint(c: httpx.Client, **body) -> httpx.Response:
    return c.post("/api/v1/tokens", json=body)


def _token(c: httpx.Client, **body) -> str:
    r = _mint(c, **body)
    assert r.status_code == 201, r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def world(server):
    """alice (default ``*`` write token) owning public ``alice`` and private ``alice-private`` with
    ``secret@1.0.0``; bob with a default ``*`` write token."""
    admin = client(server.url, server.admin_token)
    for name in ("alice", "bob"):
        assert admin.post("/api/v1/users", json={"name": name}).status_code == 201
    tokens = {"alice": _token(admin, user="alice", scope="write"), "bob": _token(admin, user="bob", scope="write")}
    alice = client(server.url, tokens["alice"])
    assert alice.post("/api/v1/namespaces", json={"name": "alice-private", "private": True}).status_code == 201
    assert push(alice, "alice-private", "secret", "1.0.0", adapter_files(7), alias="stable").status_code == 201
    assert push(alice, "alice", "public-one", "1.0.0", adapter_files(8)).status_code == 201
    yield server, admin, tokens


def _refused(world, who: str, expected: tuple[int, str, str], **body) -> None:
    server, _admin, tokens = world
    before = database_state(server)
    r = _mint(client(server.url, tokens[who]), **body)
    assert (r.status_code, r.json()["code"]) == expected[:2], r.text
    assert expected[2] in r.json()["detail"], r.text
    assert r.headers["x-error-code"] == expected[1]
    assert_still(before, lambda: database_state(server))


def test_default_token_cannot_mint_another_users_namespaces(world):
    """D1: the escalation from the report, refused; a private name reads like one nobody has."""
    _refused(world, "bob", (403, "Forbidden", "does not cover namespaces ['alice', 'alice-private']"),
             user="bob", scope="write", namespaces=["alice", "alice-private"])
    _refused(world, "bob", (403, "Forbidden", "does not cover namespaces ['alice-private']"),
             user="bob", scope="read", namespaces=["alice-private"])
    _refused(world, "bob", (403, "Forbidden", "does not cover namespaces ['nobody-has-this']"),
             user="bob", scope="read", namespaces=["nobody-has-this"])
    server, _admin, tokens = world
    assert client(server.url, tokens["bob"]).get("/api/v1/adapters/alice-private/secret").status_code == 404


def test_star_token_mints_its_own_namespaces_and_nothing_more(world):
    server, _admin, tokens = world
    child = _token(client(server.url, tokens["alice"]), user="alice", scope="read", namespaces=["alice-private"])
    c = client(server.url, child)
    assert c.get("/api/v1/adapters/alice-private/secret").status_code == 200
    assert c.patch("/api/v1/adapters/alice/public-one", json={"description": "x"}).status_code == 403
    # a child "*" only from a "*" parent; an explicit parent cannot widen itself
    narrow = _token(client(server.url, tokens["alice"]), user="alice", scope="write", namespaces=["alice"])
    tokens["alice-narrow"] = narrow
    _refused(world, "alice-narrow", (403, "Forbidden", "does not cover namespaces ['*']"),
             user="alice", scope="write", namespaces=["*"])
    _refused(world, "alice-narrow", (403, "Forbidden", "does not cover namespaces ['alice-private']"),
             user="alice", scope="write", namespaces=["alice-private"])
    # and never a higher scope
    read = _token(client(server.url, tokens["alice"]), user="alice", scope="read")
    tokens["alice-read"] = read
    _refused(world, "alice-read", (403, "Forbidden", "your token has scope 'read', not 'write'"),
             user="alice", scope="write")


def test_child_never_outlives_its_parent(world):
    """D8: no expiry asked = the parent's; a later one is refused; the child dies with the parent."""
    server, admin, tokens = world
    soon = datetime.now(UTC) + timedelta(seconds=3)
    parent = _token(admin, user="alice", scope="write", namespaces=["alice"], expires_at=soon.isoformat())
    tokens["short"] = parent
    r = _mint(client(server.url, parent), user="alice", scope="write", namespaces=["alice"], expires_at=None)
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) == soon
    child = r.json()["token"]
    _refused(world, "short", (403, "Forbidden", "a token cannot outlive the token that makes it"),
             user="alice", scope="write", namespaces=["alice"],
             expires_at=(soon + timedelta(days=365)).isoformat())
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1.0)
    for tok in (parent, child):
        r = client(server.url, tok).get("/api/v1/whoami")
        assert r.status_code == 401 and "expired" in r.json()["detail"], r.text


def test_revoking_a_token_revokes_what_it_minted(world):
    server, admin, tokens = world
    r = _mint(admin, user="alice", scope="write", namespaces=["alice"])
    parent, parent_id = r.json()["token"], r.json()["id"]
    child = _token(client(server.url, parent), user="alice", scope="write", namespaces=["alice"])
    grandchild = _token(client(server.url, child), user="alice", scope="read", namespaces=["alice"])
    assert admin.delete(f"/api/v1/tokens/{parent_id}").status_code == 204
    for tok in (parent, child, grandchild):
        r = client(server.url, tok).get("/api/v1/whoami")
        assert r.status_code == 401 and "revoked" in r.json()["detail"], r.text


@pytest.mark.parametrize("offset_h", [5, -5])
def test_expiry_with_a_utc_offset_is_kept_as_the_instant_it_names(world, offset_h):
    """D4: ``+05:00`` an hour ago is expired; ``-05:00`` an hour ahead is valid (SQLite kept the digits)."""
    server, admin, _tokens = world
    tz = timezone(timedelta(hours=offset_h))
    past = (datetime.now(UTC) - timedelta(hours=1)).astimezone(tz)
    future = (datetime.now(UTC) + timedelta(hours=1)).astimezone(tz)
    expired = _token(admin, user="alice", scope="read", namespaces=["alice-private"], expires_at=past.isoformat())
    r = client(server.url, expired).get("/api/v1/adapters/alice-private/secret")
    assert r.status_code == 401, r.text
    assert f"expired at {past.astimezone(UTC):%Y-%m-%d %H:%M} UTC" in r.json()["detail"]
    valid = _token(admin, user="alice", scope="read", namespaces=["alice-private"], expires_at=future.isoformat())
    assert client(server.url, valid).get("/api/v1/adapters/alice-private/secret").status_code == 200


def test_a_read_token_cannot_revoke_its_users_write_tokens(world):
    """D13: revoking needs the reach to have minted the token; any token may revoke itself."""
    server, admin, tokens = world
    r = _mint(admin, user="alice", scope="write", namespaces=["alice"], name="ci-deploy")
    deploy, deploy_id = r.json()["token"], r.json()["id"]
    r = _mint(admin, user="alice", scope="read", namespaces=["alice"])
    read, read_id = r.json()["token"], r.json()["id"]
    before = database_state(server)
    r = client(server.url, read).delete(f"/api/v1/tokens/{deploy_id}")
    assert (r.status_code, r.json()["code"]) == (403, "Forbidden"), r.text
    assert "may not revoke" in r.json()["detail"]
    assert_still(before, lambda: database_state(server))
    assert client(server.url, deploy).get("/api/v1/whoami").status_code == 200
    # bob's token learns nothing about alice's tokens: as for an id nobody has
    r = client(server.url, tokens["bob"]).delete(f"/api/v1/tokens/{deploy_id}")
    assert (r.status_code, r.json()["detail"]) == (404, f"no token {deploy_id}")
    assert client(server.url, read).delete(f"/api/v1/tokens/{read_id}").status_code == 204  # itself: fine
    assert client(server.url, deploy).delete(f"/api/v1/tokens/{deploy_id}").status_code == 204
    assert client(server.url, deploy).get("/api/v1/whoami").status_code == 401


@pytest.mark.parametrize("expires_at", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-14:00"])
def test_an_expiry_past_the_calendar_in_utc_is_a_422(world, expires_at):
    """Found on the second attack: converting to UTC overflowed into a bare 500."""
    server, admin, _tokens = world
    before = database_state(server)
    r = _mint(admin, user="alice", scope="read", namespaces=["alice"], expires_at=expires_at)
    assert (r.status_code, r.json()["code"]) == (422, "InvalidRequest"), r.text
    assert "out of range once converted to UTC" in r.json()["detail"]
    assert_still(before, lambda: database_state(server))


def test_a_namespace_named_twice_is_granted_once(world):
    server, _admin, tokens = world
    tok = _token(client(server.url, tokens["alice"]), user="alice", scope="read", namespaces=["alice", "alice"])
    scopes = client(server.url, tok).get("/api/v1/whoami").json()["scopes"]
    assert scopes == [{"scope": "read", "namespace": "alice"}]
