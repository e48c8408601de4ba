"""PostgreSQL restarted mid-run, on a private cluster (initdb into a temp folder, its own port):
the shared server on 5432 is never touched.

While clients keep searching, pulling, resolving, pushing and moving an alias, the cluster stops
(``pg_ctl stop -m fast``: sessions are terminated), stays down, and starts again. Every request
meanwhile either succeeds or answers 503 ``DatabaseUnavailable`` with ``Retry-After`` (never a
500, never a traceback in the log); afterwards the same server process answers again (the pool
pre-pings and reconnects) and, after a restart, the registry is consistent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.support import assert_clean_log, assert_error, writer
from tests.helpers.consistency import check_consistent
from tests.helpers.live_server import free_port, start_server, stop_server
from tests.registry.factory import adapter_files, client, manifest, push, sha

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)


class Cluster:
    """A throwaway PostgreSQL cluster owned by the ``postgres`` user when run as root."""

    def __init__(self, pg_ctl: Path, folder: Path, port: int):
        self.bin, self.data, self.port = pg_ctl.parent, folder / "data", port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/hub"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_postgres, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")
        self.start()
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE hub")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.data / "log"),
                  "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not PG_BINS:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin to run a private cluster")
    folder = Path(tempfile.mkdtemp(prefix="adapterhub-pg-"))  # not under pytest's 0700 tmp: postgres must enter
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    c = Cluster(PG_BINS[0], folder, free_port())
    try:
        c.init()
        yield c
    finally:
        try:
            c.stop("immediate")
        except RuntimeError:
            pass  # already down
        shutil.rmtree(folder, ignore_errors=True)


class Traffic(threading.Thread):
    """One client looping over search, pull, resolve, push and an alias move, recording statuses."""

    def __init__(self, url: str, token: str):
        super().__init__(daemon=True)
        self.c = client(url, token)
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.acked: dict[tuple[str, str], dict[str, bytes]] = {}
        self.maybe: set[tuple[str, str]] = set()
        self.halt = threading.Event()
        self.failure: BaseException | None = None

    def _do(self, op: str, r: httpx.Response) -> httpx.Response:
        self.statuses[(op, r.status_code)] += 1
        if r.status_code >= 500:
            assert_error(r, 503, "DatabaseUnavailable")
        return r

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.failure = exc

    def _loop(self) -> None:
        n = 0
        while not self.halt.is_set():
            n += 1
            self._do("search", self.c.get("/api/v1/adapters", params={"q": "a"}))
            self._do("pull", self.c.get("/api/v1/adapters/pg/a/versions/1.0.0/files/adapter_config.json"))
            self._do("resolve", self.c.get("/api/v1/adapters/pg/a/resolve", params={"ref": ":stable"}))
            files = adapter_files(100 + n)
            shas = {sha(b): b for b in files.values()}
            missing = self._do("missing", self.c.post("/api/v1/blobs/missing", json={"sha256": list(shas)}))
            uploads = [self._do("blob", self.c.put(f"/api/v1/blobs/{s}", content=shas[s])).status_code
                       for s in missing.json().get("missing", [])]
            if missing.status_code != 200 or any(u not in (200, 201) for u in uploads):
                continue  # as a client would: publish only once every blob is in
            version = f"2.{n}.0"
            r = self._do("publish", self.c.post("/api/v1/adapters/pg/a/versions",
                                                json={"version": version, "files": manifest(files)}))
            if r.status_code == 201:
                self.acked[("a", version)] = files
            else:  # the commit may have landed before the connection died
                self.maybe.add(("a", version))
            target = version if r.status_code == 201 else "1.0.0"
            self._do("alias", self.c.put("/api/v1/adapters/pg/a/aliases/latest", json={"version": target}))


def test_postgres_restart_answers_503_then_recovers_without_restart(tmp_path: Path, cluster: Cluster):
    home = tmp_path / "home"
    srv = start_server(home, database_url=cluster.url)
    try:
        token, c = writer(srv, "pg")
        assert push(c, "pg", "a", "1.0.0", adapter_files(1), alias="stable").status_code == 201
        traffic = Traffic(srv.url, token)
        traffic.start()
        time.sleep(1.0)
        cluster.stop("fast")
        assert_error(c.get("/api/v1/adapters"), 503, "DatabaseUnavailable")
        assert_error(c.get("/api/v1/adapters/pg/a/versions/1.0.0/files/adapter_config.json"), 503,
                     "DatabaseUnavailable")
        v2 = adapter_files(2)
        assert_error(c.post("/api/v1/blobs/missing", json={"sha256": [sha(b) for b in v2.values()]}), 503,
                     "DatabaseUnavailable")
        r = c.post("/api/v1/adapters/pg/a/versions", json={"version": "1.1.0", "files": manifest(v2)})
        assert_error(r, 503, "DatabaseUnavailable")
        time.sleep(1.0)
        cluster.start()
        time.sleep(1.0)
        traffic.halt.set()
        traffic.join(timeout=60)
        assert not traffic.is_alive() and traffic.failure is None, traffic.failure

        assert c.get("/api/v1/adapters").status_code == 200  # the same process answers again
        assert push(c, "pg", "a", "1.2.0", adapter_files(3)).status_code == 201
        statuses = {s for _op, s in traffic.statuses}
        assert 503 in statuses and statuses <= {200, 201, 503}, traffic.statuses
        assert_clean_log(srv)
    finally:
        stop_server(srv)
    acked = {("a", "1.0.0"): adapter_files(1), ("a", "1.2.0"): adapter_files(3), **traffic.acked}

    srv = start_server(home, database_url=cluster.url)
    try:
        check_consistent(srv.url, token, "pg", acked, frozenset(traffic.maybe))
    finally:
        stop_server(srv)
