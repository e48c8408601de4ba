"""End to end in subprocesses (``python -m adapterhub.cli``) against a real registry server."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapterhub.registry.client import Hub
from tests.client.support import folder_bytes, make_adapter, proxy

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

MiB = 1024 * 1024


def env_for(home: Path, url: str, token: str | None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERHUB_")}
    env.update({"ADAPTERHUB_HOME": str(home), "ADAPTERHUB_URL": url, **extra})
    if token:
        env["ADAPTERHUB_TOKEN"] = token
    return env


def command(*args) -> list[str]:
    return [sys.executable, "-m", "adapterhub.cli", *map(str, args)]


def ah(*args, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(*args), env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def ah_json(*args, env: dict):
    return json.loads(ah(*args, "--json", env=env).stdout)


def assert_matches_manifest(folder: Path, manifest: dict) -> None:
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(f["path"] for f in manifest["files"])
    for f in manifest["files"]:
        assert hashlib.sha256(files[f["path"]].read_bytes()).hexdigest() == f["sha256"]


def test_push_search_pull_and_alias_move(server, tmp_path):
    env = env_for(tmp_path / "home", server.url, server.admin_token)
    v1, v2 = make_adapter(tmp_path / "v1", seed=10), make_adapter(tmp_path / "v2", seed=11)
    ah("push", v1, "acme/e2e", "--version", "1.0.0", "--alias", "stable", env=env)
    ah("push", v2, "acme/e2e", "--version", "1.1.0", env=env)
    assert "acme/e2e" in [f"{a['namespace']}/{a['name']}" for a in ah_json("search", "e2e", env=env)]
    pulled = ah_json("pull", "acme/e2e", env=env)
    assert pulled["version"] == "1.0.0"
    assert folder_bytes(Path(pulled["path"])) == folder_bytes(v1)
    assert_matches_manifest(Path(pulled["path"]), ah_json("show", "acme/e2e", env=env)["version"])
    ah("alias", "set", "acme/e2e", "stable", "1.1.0", env=env)
    moved = ah_json("pull", "acme/e2e:stable", env=env)
    assert moved["version"] == "1.1.0"
    assert folder_bytes(Path(moved["path"])) == folder_bytes(v2)
    assert_matches_manifest(Path(moved["path"]), ah_json("show", "acme/e2e@1.1.0", env=env)["version"])


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_pull_resumes_with_range_and_gives_the_right_bytes(server, tmp_path):
    folder = make_adapter(tmp_path / "big", seed=12, extra_bytes=20 * MiB)
    with Hub(server.url, server.admin_token, progress=False) as hub:
        manifest = hub.push(folder, "acme/big", version="1.0.0")
    big = max(manifest["files"], key=lambda f: f["size"])
    home = tmp_path / "home"
    partial = home / "cache" / "adapters--acme--big" / "blobs" / f"{big['sha256']}.incomplete"
    with proxy(server.url, delay=0.02) as slow:
        env = env_for(home, slow.url, server.admin_token)
        proc = subprocess.Popen(command("pull", "acme/big"), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            _wait_for(lambda: partial.exists() and partial.stat().st_size > 2 * MiB, what="a partial download")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    kept = partial.stat().st_size
    assert 0 < kept < big["size"]
    assert not (home / "cache" / "adapters--acme--big" / "snapshots" / "1.0.0").exists()
    with proxy(server.url) as fast:
        pulled = ah_json("pull", "acme/big", env=env_for(home, fast.url, server.admin_token))
    ranges = [r for m, path, r in fast.requests if m == "GET" and path.endswith("/adapter_model.safetensors")]
    assert len(ranges) == 1 and ranges[0] is not None
    assert int(ranges[0].removeprefix("bytes=").rstrip("-")) >= kept - 64 * 1024  # resumed, not restarted
    assert folder_bytes(Path(pulled["path"])) == folder_bytes(folder)
    assert_matches_manifest(Path(pulled["path"]), manifest)


def test_two_concurrent_pulls_download_once(server, tmp_path):
    folder = make_adapter(tmp_path / "a", seed=13, extra_bytes=2 * MiB)
    with Hub(server.url, server.admin_token, progress=False) as hub:
        manifest = hub.push(folder, "acme/twice-pulled", version="1.0.0")

    def started(p) -> list[str]:
        return [path for _, path, _ in p.requests]

    with proxy(server.url) as p:
        p.gate.clear()  # hold the first pull inside its download ...
        env = env_for(tmp_path / "home", p.url, server.admin_token)
        pull = command("pull", "acme/twice-pulled", "--json")
        first = subprocess.Popen(pull, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: any("/files/" in path for path in started(p)), what="the first download")
        second = subprocess.Popen(pull, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: sum("/resolve" in path for path in started(p)) == 2, what="the second pull")
        time.sleep(0.5)  # ... while the second one reaches the cache (a download of its own would show)
        p.gate.set()
        outs = [proc.communicate(timeout=120) for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    paths = {json.loads(out)["path"] for out, _ in outs}
    assert len(paths) == 1
    file_gets = [path for m, path, _ in p.requests if m == "GET" and "/files/" in path]
    assert sorted(file_gets) == sorted(f"/api/v1/adapters/acme/twice-pulled/versions/1.0.0/files/{f['path']}"
                                       for f in manifest["files"])
    assert folder_bytes(Path(paths.pop())) == folder_bytes(folder)
    with Hub(server.url, server.admin_token) as hub:
        assert hub.show("acme/twice-pulled")["downloads"] == 1


def test_offline_mode_uses_the_cache_and_names_what_is_missing(server, tmp_path):
    home = tmp_path / "home"
    env = env_for(home, server.url, server.admin_token)
    ah("push", make_adapter(tmp_path / "a", seed=14), "acme/offline", "--version", "1.0.0", "--alias", "stable",
       env=env)
    online = ah_json("pull", "acme/offline:stable", env=env)
    with socket.socket() as s:  # a URL nobody answers: offline must not need it
        s.bind(("127.0.0.1", 0))
        dead = env_for(home, f"http://127.0.0.1:{s.getsockname()[1]}", None, ADAPTERHUB_OFFLINE="1")
        assert ah_json("pull", "acme/offline:stable", env=dead) == online
        assert ah_json("pull", "acme/offline@1.0.0", env=dead)["path"] == online["path"]
        missing = ah("pull", "acme/offline:canary", env=dead, check=False)
        search = ah("search", env=dead, check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: ADAPTERHUB_OFFLINE=1 and acme/offline:canary is not in the local cache")
    assert missing.stderr.count("\n") == 1
    assert search.returncode == 1 and "ADAPTERHUB_OFFLINE=1: cannot reach" in search.stderr


def test_pull_prints_only_the_folder_on_stdout(server, tmp_path):
    env = env_for(tmp_path / "home", server.url, server.admin_token)
    ah("push", make_adapter(tmp_path / "a", seed=15), "acme/quiet", "--version", "1.0.0", env=env)
    out = ah("pull", "acme/quiet", env=env)
    assert out.stdout.strip().endswith("snapshots/1.0.0") and out.stdout.count("\n") == 1
