"""``kill -9`` mid-upload: after a restart no partial blob or version is visible; temp files are swept."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.helpers.live_server import start_server, stop_server
from tests.registry.factory import adapter_files, client, make_user, manifest, push, sha, upload

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module


def test_kill_during_upload_leaves_no_trace(tmp_path: Path):
    home = tmp_path / "home"
    srv = start_server(home)
    try:
        admin = client(srv.url, srv.admin_token)
        token = make_user(admin, "crash")
        c = client(srv.url, token)
        assert push(c, "crash", "a", "1.0.0", adapter_files(1)).status_code == 201
        big = b"w" * (8 * 1024 * 1024)
        u = urlparse(srv.url)
        sock = socket.create_connection((u.hostname, u.port))
        sock.sendall((f"PUT /api/v1/blobs/{sha(big)} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Length: {len(big)}\r\n\r\n").encode() + big[: 3 * 1024 * 1024])
        tmp_dir = home / "blobs" / "tmp"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(p.stat().st_size > 0 for p in tmp_dir.glob("*.part")):
            time.sleep(0.05)
        partial = list(tmp_dir.glob("*.part"))
        assert partial and partial[0].stat().st_size > 0
    finally:
        stop_server(srv, kill=True)
    sock.close()
    assert partial[0].exists()  # the crash left it behind

    srv = start_server(home)
    try:
        assert list(tmp_dir.glob("*.part")) == []
        assert "swept 1 unfinished upload(s)" in srv.log()
        c = client(srv.url, token)
        assert c.post("/api/v1/blobs/missing", json={"sha256": [sha(big)]}).json() == {"missing": [sha(big)]}
        files = {**adapter_files(2), "big.dat": big}
        upload(c, {k: v for k, v in files.items() if k != "big.dat"})
        r = c.post("/api/v1/adapters/crash/a/versions", json={"version": "1.1.0", "files": manifest(files)})
        assert r.status_code == 422 and r.json()["code"] == "BlobMissing"
        assert [v["version"] for v in c.get("/api/v1/adapters/crash/a/versions").json()] == ["1.0.0"]
        assert httpx.get(f"{srv.url}/api/v1/adapters/crash/a/versions/1.0.0/files/adapter_config.json").content == \
            adapter_files(1)["adapter_config.json"]
    finally:
        stop_server(srv)
