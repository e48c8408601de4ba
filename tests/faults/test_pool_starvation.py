"""Requests must not starve each other of pooled database connections (both found by the load test).

- A download kept its request's database session (a pooled connection and an open read
  transaction) until the last byte was sent, so more stalled downloads than the pool holds (50
  on SQLite, 30 on PostgreSQL) made every other request wait 30 s for a connection and fail with
  500. The session now closes when the route returns, before the body streams.
- A counted pull held its read connection while it took a second one to count the download, so
  pulls queued on SQLite's write lock held two connections each and drained the pool. The read
  connection now goes back first.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.faults.support import writer
from tests.helpers.live_server import ServerHandle, run_server
from tests.registry.factory import adapter_files, push

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

STALLED = 60  # more than either pool
SIZE = 12 * 1024 * 1024  # far more than the socket buffers take, so every stream stays open


def _start_download(port: int, path: str) -> tuple[socket.socket, bytes]:
    """Send the request and read only the status line and headers; never read the body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1024)
        if not chunk:
            break
        head += chunk
    return sock, head.split(b"\r\n", 1)[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerHandle]:
    with run_server(tmp_path_factory.mktemp("pool") / "home") as srv:
        yield srv


def test_stalled_downloads_do_not_starve_the_pool(server: ServerHandle):
    _token, c = writer(server, "slow")
    files = {**adapter_files(1), "big.dat": os.urandom(SIZE)}
    assert push(c, "slow", "a", "1.0.0", files).status_code == 201
    socks = []
    try:
        for _ in range(STALLED):
            sock, status = _start_download(server.port, "/api/v1/adapters/slow/a/versions/1.0.0/files/big.dat")
            socks.append(sock)
            assert status == b"HTTP/1.1 200 OK", status
        r = c.get("/api/v1/adapters", params={"namespace": "slow"})  # needs a connection of its own
        assert r.status_code == 200, r.text
        assert [a["name"] for a in r.json()["items"]] == ["a"]
    finally:
        for sock in socks:
            sock.close()


WAITING_PULLS = 30  # fewer than the 40 server threads (a search still gets one), more than half the pool


def test_pulls_waiting_to_count_do_not_drain_the_pool(server: ServerHandle):
    _token, c = writer(server, "count")
    assert push(c, "count", "a", "1.0.0", adapter_files(1)).status_code == 201
    url = f"{server.url}/api/v1/adapters/count/a/versions/1.0.0/files/adapter_config.json"
    lock = sqlite3.connect(server.home / "registry.sqlite", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # every download count now waits for the write lock
    try:
        with ThreadPoolExecutor(WAITING_PULLS) as pool:
            pulls = [pool.submit(httpx.get, url, timeout=120) for _ in range(WAITING_PULLS)]
            for _ in range(3):
                time.sleep(1.0)  # let the pulls reach the count (a search sent too early proves nothing)
                r = c.get("/api/v1/adapters", params={"namespace": "count"})
                assert r.status_code == 200, r.text
            lock.execute("ROLLBACK")
            assert [p.result().status_code for p in pulls] == [200] * WAITING_PULLS
    finally:
        lock.close()
