"""Fixtures shared by tests/client and tests/cli (each conftest imports them)."""

from __future__ import annotations

import pytest

from tests.client.support import live_registry


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own ADAPTERHUB_HOME and none of the caller's ADAPTERHUB_* settings."""
    for var in ("ADAPTERHUB_URL", "ADAPTERHUB_TOKEN", "ADAPTERHUB_OFFLINE", "ADAPTERHUB_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("ADAPTERHUB_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real registry per test module (tests use distinct adapter names)."""
    with live_registry(tmp_path_factory.mktemp("registry")) as srv:
        yield srv


@pytest.fixture
def online(server, monkeypatch):
    """Point the client and the CLI at the live registry with the admin token."""
    monkeypatch.setenv("ADAPTERHUB_URL", server.url)
    monkeypatch.setenv("ADAPTERHUB_TOKEN", server.admin_token)
    return server
