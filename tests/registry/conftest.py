"""Fixtures: a real uvicorn registry per test module, over SQLite and over PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers.live_server import drop_postgres, postgres_url, run_server
from tests.registry.factory import client

MAX_UPLOAD = 1024 * 1024


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])  # fast lane: SQLite
def server(request, tmp_path_factory):
    db_url = postgres_url() if request.param == "postgres" else None
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    try:
        with run_server(home, database_url=db_url, env={"ADAPTERHUB_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)}) as handle:
            handle.backend = request.param
            yield handle
    finally:
        if db_url:
            drop_postgres(db_url)


@pytest.fixture
def admin(server):
    with client(server.url, server.admin_token) as c:
        yield c


@pytest.fixture
def anon(server):
    with client(server.url) as c:
        yield c


@pytest.fixture
def user(server, admin):
    """A fresh user with a write token on their own namespace: ``(name, client)``."""
    from tests.registry.factory import make_user

    name = f"u{uuid.uuid4().hex[:10]}"
    token = make_user(admin, name)
    with client(server.url, token) as c:
        yield name, c
