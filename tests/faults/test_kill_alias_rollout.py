"""The server ``kill -9``'d while clients move aliases and step a rollout, then restarted.

Three clients write at once, each sequentially so its last acknowledged write is well defined:
two move an alias each among the versions, one drives the rollout of ``prod`` (start, step,
pause, resume, promote, roll back). The server is killed at a random moment, restarted, and
then: every acknowledged write holds (or the one in flight at the kill, never anything else),
each alias equals the last audit entry for it, each rollout's state and weight are those of
its last audit entry, and at most one rollout is open per alias, rolling out from where the
alias points. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.faults.support import assert_clean_log, writer
from tests.helpers.consistency import check_consistent
from tests.helpers.live_server import drop_postgres, free_port, postgres_url, start_server, stop_server
from tests.registry.factory import adapter_files, client, push

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]


class Writer(threading.Thread):
    """Sequential writes until the server dies; ``acked``/``pending`` are the expected outcomes of
    the last answered write and of the one without an answer."""

    def __init__(self, url: str, token: str, seed: int):
        super().__init__(daemon=True)
        self.c = client(url, token)
        self.c.timeout = httpx.Timeout(30.0)
        self.rng = random.Random(seed)
        self.acked, self.pending, self.writes = None, None, 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                self.step()
                self.writes += 1
        except httpx.TransportError:
            return  # killed
        except BaseException as exc:
            self.failure = exc


class AliasMover(Writer):
    def __init__(self, url: str, token: str, seed: int, alias: str):
        super().__init__(url, token, seed)
        self.alias = alias

    def step(self) -> None:
        version = self.rng.choice(VERSIONS)
        self.pending = version
        r = self.c.put(f"/api/v1/adapters/kill/k/aliases/{self.alias}", json={"version": version})
        assert r.status_code == 200, r.text
        self.acked, self.pending = version, None


class RolloutDriver(Writer):
    """Drives the rollout of ``prod``; outcomes are ``(rollout id or "new", state, weight)``."""

    def __init__(self, url: str, token: str, seed: int, rollouts: dict[int, dict]):
        super().__init__(url, token, seed)
        self.open = next((r for r in rollouts.values() if r["state"] in ("active", "paused")), None)
        self.known = max(rollouts, default=0)

    def step(self) -> None:
        base = "/api/v1/adapters/kill/k/rollouts"
        if self.open is None:
            prod = self.c.get("/api/v1/adapters/kill/k/aliases").json()["prod"]
            weight = float(self.rng.randrange(0, 101))
            self.pending = ("new", "active", weight)
            canary = self.rng.choice([v for v in VERSIONS if v != prod])
            r = self.c.post(base, json={"alias": "prod", "canary_version": canary, "weight": weight})
            assert r.status_code == 201, r.text
        else:
            rid, state = self.open["id"], self.open["state"]
            action = self.rng.choice(["step", "step", "promote", "rollback", "pause" if state == "active" else "resume"])
            weight = float(self.rng.randrange(0, 101))
            after = {"step": (state, weight), "pause": ("paused", self.open["weight"]),
                     "resume": ("active", self.open["weight"]), "promote": ("promoted", 100.0),
                     "rollback": ("rolled_back", 0.0)}[action]
            self.pending = (rid, *after)
            r = self.c.post(f"{base}/prod/{action}", json={"weight": weight} if action == "step" else {})
            assert r.status_code == 200, r.text
        row = r.json()
        self.known = max(self.known, row["id"])
        self.acked, self.pending = (row["id"], row["state"], row["weight"]), None
        self.open = row if row["state"] in ("active", "paused") else None


def check_durable(movers: list[AliasMover], driver: RolloutDriver, state: dict) -> None:
    """Each writer's last acknowledged write holds, or the write in flight at the kill replaced it."""
    for m in movers:
        allowed = {m.acked, m.pending} - {None}
        if allowed:
            assert state["aliases"].get(m.alias) in allowed, (m.alias, state["aliases"], allowed)
    rows = state["rollouts"]
    fresh = [r for rid, r in rows.items() if rid > driver.known]
    pending = driver.pending
    if pending and pending[0] == "new":
        assert len(fresh) <= 1 and all((r["state"], r["weight"]) == pending[1:] for r in fresh), (fresh, pending)
    else:
        assert fresh == [], fresh
    if driver.acked:
        rid = driver.acked[0]
        got = (rid, rows[rid]["state"], rows[rid]["weight"])
        allowed = {driver.acked} | ({pending} if pending and pending[0] == rid else set())
        assert got in allowed, (got, allowed)


@pytest.mark.parametrize(("backend", "kills"), [("sqlite", 2), ("postgres", 1)])  # each kill costs a restart
def test_kill_during_alias_moves_and_rollout_steps(tmp_path: Path, backend: str, kills: int):
    database_url = postgres_url() if backend == "postgres" else None
    home, port = tmp_path / "home", free_port()
    rng = random.Random(uuid.uuid4().int)
    srv = start_server(home, database_url=database_url, port=port)
    try:
        token, c = writer(srv, "kill")
        acked = {("k", v): adapter_files(i) for i, v in enumerate(VERSIONS)}
        for (_a, v), files in acked.items():
            assert push(c, "kill", "k", v, files).status_code == 201
        for alias in ("a", "b", "prod"):
            assert c.put(f"/api/v1/adapters/kill/k/aliases/{alias}", json={"version": "1.0.0"}).status_code == 200
        state = check_consistent(srv.url, token, "kill", acked)["k"]
        writes = 0
        for _kill in range(kills):
            movers = [AliasMover(srv.url, token, rng.random(), alias) for alias in ("a", "b")]
            driver = RolloutDriver(srv.url, token, rng.random(), state["rollouts"])
            for w in (*movers, driver):
                w.start()
            time.sleep(rng.uniform(0.5, 2.0))
            stop_server(srv, kill=True)
            for w in (*movers, driver):
                w.join(timeout=60)
                assert not w.is_alive() and w.failure is None, w.failure
                writes += w.writes
            srv = start_server(home, database_url=database_url, port=port)
            state = check_consistent(srv.url, token, "kill", acked)["k"]
            check_durable(movers, driver, state)
        assert writes > 0  # the kills did land among writes
        assert_clean_log(srv)
    finally:
        stop_server(srv)
        if database_url:
            drop_postgres(database_url)
