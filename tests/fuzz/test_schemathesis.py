"""Schemathesis, an outside fuzzer, against the registry's own OpenAPI document on a real server.

Why: the document is the contract third-party clients generate code from; every operation must
answer bad and odd input with a 4xx it declares, never a 5xx, and every response must match the
schema it advertises. The fuzzer knows nothing of ours but the document ``/api/v1/openapi.json``
serves, and talks to a real uvicorn on 127.0.0.1.

Each operation is fuzzed as three callers (``caller`` in conftest.py, which also runs all
anonymous items first, then the read-only token's, then the admin's: admin may yank, revoke and
end what the others read). Each generated path parameter is, at random, the fuzzed value or one
that exists in a seeded world (an adapter with two versions, aliases, an evaluation and an open
rollout), so that the fuzzer gets past 404 into the real handlers.

Bounded inside ``make test`` (SQLite, a few examples per operation, fixed seed, derandomized);
``make fuzz`` raises the counts, turns on the coverage phase and adds PostgreSQL through
``ADAPTERHUB_FUZZ_EXAMPLES``, ``ADAPTERHUB_FUZZ_BACKENDS=sqlite,postgres`` and
``ADAPTERHUB_FUZZ_COVERAGE=1``. Each finding also lives on as a plain request in
``tests/registry/test_fuzz_regressions.py``.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapterhub.registry.server.app import create_app
from adapterhub.registry.server.settings import Settings
from tests.helpers.live_server import ServerHandle, drop_postgres, postgres_url, run_server
from tests.registry.factory import adapter_files, client, make_user, push, sha

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

EXAMPLES = int(os.environ.get("ADAPTERHUB_FUZZ_EXAMPLES", "5"))
BACKENDS = os.environ.get("ADAPTERHUB_FUZZ_BACKENDS", "sqlite").split(",")
COVERAGE = os.environ.get("ADAPTERHUB_FUZZ_COVERAGE", "0") == "1"
SEED = int(os.environ.get("ADAPTERHUB_FUZZ_SEED", "90901"))

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]

SEEDED_FILES = 7  # adapter_files() seed of fuzz/seeded@1.0.0
# Path-parameter values that exist once `seed_world` ran.
KNOWN = {"ns": "fuzz", "name": "seeded", "version": "1.0.0", "rev": "main", "alias": "prod",
         "path": "adapter_config.json", "sha256": sha(adapter_files(SEEDED_FILES)["adapter_config.json"])}
# Upload limit of the fuzzed server: small, so a fuzzed body can also cross it.
MAX_UPLOAD = 64 * 1024


@dataclass
class World:
    """The server and a token per caller (None: anonymous)."""

    server: ServerHandle
    tokens: dict[str, str | None]

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens[caller]
        return {"Authorization": f"Bearer {token}"} if token else {}


def seed_world(server: ServerHandle) -> World:
    """A user ``fuzz`` owning ``fuzz/seeded`` with 1.0.0 (stable) and 1.1.0, an evaluation and an
    open rollout on alias ``prod``; plus a read-only token on ``fuzz``."""
    files = adapter_files(SEEDED_FILES)
    with client(server.url, server.admin_token) as admin:
        writer = make_user(admin, "fuzz")
        reader = admin.post("/api/v1/tokens", json={"user": "fuzz", "scope": "read", "namespaces": ["fuzz"]})
        assert reader.status_code == 201, reader.text
    with client(server.url, writer) as c:
        assert push(c, "fuzz", "seeded", "1.0.0", files, alias="stable").status_code == 201
        assert push(c, "fuzz", "seeded", "1.1.0", adapter_files(8), create=False).status_code == 201
        r = c.put("/api/v1/adapters/fuzz/seeded/aliases/prod", json={"version": "1.0.0"})
        assert r.status_code == 200, r.text
        r = c.post("/api/v1/adapters/fuzz/seeded/versions/1.0.0/evaluations",
                   json={"dataset": "sst2", "metrics": {"accuracy": 0.9}})
        assert r.status_code == 201, r.text
        r = c.post("/api/v1/adapters/fuzz/seeded/rollouts", json={"alias": "prod", "canary_version": "1.1.0",
                                                                 "weight": 10})
        assert r.status_code == 201, r.text
    return World(server, {"anonymous": None, "read": reader.json()["token"], "admin": server.admin_token})


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    db_url = postgres_url() if request.param == "postgres" else None
    home = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    try:
        with run_server(home, database_url=db_url,
                        env={"ADAPTERHUB_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)}) as server:
            yield seed_world(server)
    finally:
        if db_url:
            drop_postgres(db_url)


def _steer(known: dict[str, str]):
    """A ``flatmap_path_parameters`` hook: each path parameter is the fuzzed value or the seeded one."""

    def flatmap_path_parameters(_context, path_parameters):
        if not path_parameters:
            return st.just(path_parameters)
        return st.fixed_dictionaries({
            key: st.sampled_from([value, known[key]]) if key in known else st.just(value)
            for key, value in path_parameters.items()
        })

    return flatmap_path_parameters


def served_document() -> dict:
    """The OpenAPI document, built by the registry's own app factory on a throwaway home.

    Schemathesis's lazy ``from_fixture`` loader breaks on pytest 9.2 (it writes ``Node._nodeid``),
    so the schema is loaded at import time; `test_fuzzed_document_is_the_served_one` proves that
    the live server serves exactly this document.
    """
    with tempfile.TemporaryDirectory() as home:
        app = create_app(Settings.from_env({"ADAPTERHUB_HOME": home, "ADAPTERHUB_ADMIN_TOKEN": "unused"}))
        try:
            return app.openapi()
        finally:
            app.state.engine.dispose()


DOCUMENT = served_document()
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT), config=schemathesis.Config.from_dict({
    "seed": SEED,
    "suppress-health-check": ["all"],
    "request-timeout": 30,
    "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"coverage": {"enabled": COVERAGE}, "stateful": {"enabled": False}},
}))
schema.hook(_steer(KNOWN))


def test_fuzzed_document_is_the_served_one(world: World) -> None:
    assert httpx.get(f"{world.server.url}/api/v1/openapi.json").json() == DOCUMENT


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case, caller: str, world: World) -> None:
    case.call_and_validate(base_url=world.server.url, headers=world.headers(caller), checks=CHECKS, timeout=30)
