"""Shared by the fault tests: a registry user to push as, and checks on what the server said."""

from __future__ import annotations

import httpx

from tests.helpers.live_server import ServerHandle
from tests.registry.factory import client, make_user


def writer(srv: ServerHandle, name: str) -> tuple[str, httpx.Client]:
    """A new user ``name`` (namespace ``name``) and a client holding their write token."""
    with client(srv.url, srv.admin_token) as admin:
        token = make_user(admin, name)
    return token, client(srv.url, token)


def assert_clean_log(srv: ServerHandle) -> None:
    """A fault must surface as an error status, never as an unhandled exception in the server."""
    log = srv.log()
    assert "Traceback" not in log, log[log.index("Traceback"):][:3000]


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    """The exact status and code, with ``Retry-After`` (these faults are worth retrying)."""
    assert (r.status_code, r.json().get("code")) == (status, code), f"{r.status_code} {r.text}"
    assert r.headers.get("retry-after"), r.headers
