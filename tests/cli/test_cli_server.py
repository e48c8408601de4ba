"""``adapterhub serve`` and ``adapterhub up`` as real processes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.helpers.live_server import free_port

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module


def _env(home, **extra) -> dict:
    """A fresh home; no base registration (``up`` would convert and mirror 600 MB of models into
    each test's home: tests/registry/test_bases.py registers and mirrors them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERHUB_")}
    return {**env, "ADAPTERHUB_HOME": str(home), "ADAPTERHUB_BASES": "0", **extra}


def _healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"nothing answered at {url}")


def _down(url: str) -> bool:
    try:
        httpx.get(f"{url}/api/v1/health", timeout=1)
    except httpx.TransportError:
        return True
    return False


def _start(args, env):
    return subprocess.Popen([sys.executable, "-m", "adapterhub.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_runs_the_registry_in_the_foreground(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(["serve", "--port", str(port)], _env(tmp_path, ADAPTERHUB_ADMIN_TOKEN="admin-secret"))
    try:
        _healthy(url, proc)
        who = httpx.get(f"{url}/api/v1/whoami", headers={"Authorization": "Bearer admin-secret"})
        assert who.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert _down(url)


def test_up_prints_url_and_admin_token_once_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(["up", "--port", str(port)], _env(tmp_path))
    try:
        _healthy(url, proc)
        line = proc.stdout.readline()
        assert line.startswith(f"registry: {url}")
        token = proc.stdout.readline().strip().rsplit(" ", 1)[1]
        assert token.startswith("ah_admin_")
        assert oct((tmp_path / "admin_token").stat().st_mode & 0o777) == "0o600"
        assert (tmp_path / "token").read_text().strip() == token  # stored as the login
        who = httpx.get(f"{url}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
        assert who.status_code == 200, who.text
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping" in err
    assert _down(url)
    proc = _start(["up", "--port", str(port)], _env(tmp_path))
    try:
        _healthy(url, proc)
    finally:
        proc.send_signal(signal.SIGTERM)  # a service manager's stop: children go too
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and _down(url)
    assert "admin token" not in out and token not in out + err


def test_up_refuses_a_port_where_something_already_answers(server, tmp_path):
    from click.testing import CliRunner

    from adapterhub.cli.main import cli

    result = CliRunner().invoke(cli, ["up", "--port", str(server.port)])
    assert result.exit_code == 1
    assert result.output == f"Error: something already answers at {server.url}; stop it or pick another --port\n"


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)


def _stderr_until(proc: subprocess.Popen, prefix: str, timeout: float = 180) -> list[str]:
    """The lines ``proc`` writes on stderr up to the first that starts with ``prefix`` (read in a thread)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    seen = []
    while not seen or not seen[-1].startswith(prefix):
        seen.append(lines.get(timeout=timeout))
    return seen


def test_up_honours_the_admin_token_in_the_environment_as_serve_does(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(["up", "--port", str(port)], _env(tmp_path, ADAPTERHUB_ADMIN_TOKEN="env-secret", ADAPTERHUB_UI="0"))
    try:
        err = "".join(_stderr_until(proc, "press Ctrl-C to stop"))
        who = httpx.get(f"{url}/api/v1/whoami", headers={"Authorization": "Bearer env-secret"})
        assert who.status_code == 200 and who.json()["is_admin"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0, err + rest
    assert not (tmp_path / "admin_token").exists() and not (tmp_path / "token").exists()
    assert "env-secret" not in out + err + rest and "shown once" not in out
    assert "admin token: ADAPTERHUB_ADMIN_TOKEN (the rule `adapterhub serve` follows too)" in err


def test_up_prints_the_ui_url_only_once_the_ui_answers(tmp_path):
    port, ui_port = free_port(), free_port()
    env = _env(tmp_path, ADAPTERHUB_ADMIN_TOKEN="env-secret", ADAPTERHUB_UI_PORT=str(ui_port))
    proc = _start(["up", "--port", str(port)], env)
    try:
        line = _stderr_until(proc, "UI: ")[-1]
        assert line == f"UI: http://127.0.0.1:{ui_port}\n"
        assert httpx.get(f"http://127.0.0.1:{ui_port}", timeout=5).status_code == 200  # it answers already
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert _down(f"http://127.0.0.1:{ui_port}")
