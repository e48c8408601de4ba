"""``adapterhub ui``: the Streamlit UI (``adapterhub.web``) against a registry.

``ui_command`` builds the ``streamlit run`` command line; ``adapterhub up`` starts the same one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx

from adapterhub.registry import config

ENTRY = Path(__file__).resolve().parent.parent / "web" / "app.py"
START_TIMEOUT_S = 90.0  # Streamlit imports pandas and more before it listens: seconds on a busy 2-core box


def entry_script() -> Path:
    """The installed ``adapterhub/web/app.py`` (located without importing Streamlit)."""
    import importlib.util

    spec = importlib.util.find_spec("adapterhub.web")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / "app.py"
    return ENTRY


def pick_port(preferred: int) -> int:
    """``preferred`` when nothing listens there on 127.0.0.1, else a free port the OS picks."""
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ui_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(entry_script()),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal"]


def start_ui(registry: str, host: str = "127.0.0.1", port: int = 8501, env: dict | None = None) -> subprocess.Popen:
    """Start ``streamlit run`` as a child process pointed at ``registry``."""
    child_env = {**(env or os.environ), "ADAPTERHUB_URL": registry}
    if host not in ("127.0.0.1", "localhost", "::1"):  # others can reach it: sessions start anonymous
        child_env["ADAPTERHUB_UI_SHARED"] = "1"
    return subprocess.Popen(ui_command(host, port), env=child_env)


def answers(url: str, proc: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> bool:
    """True once ``url`` answers HTTP at all (any status); False when ``proc`` exits or ``timeout``
    passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            httpx.get(url, timeout=2.0)
            return True
        except httpx.TransportError:
            time.sleep(0.2)
    return False


def announce_when_answering(url: str, proc: subprocess.Popen, suffix: str = "",
                            timeout: float = START_TIMEOUT_S) -> None:
    """Print ``UI: <url>`` once the UI answers there, so the printed link opens a page, not an error.

    A UI that exits first prints nothing (its caller reports the exit); one still silent after
    ``timeout`` gets a note. Interrupted while waiting (Ctrl-C), it stops the UI before going on.
    """
    try:
        ready = answers(url, proc, timeout)
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    if ready:
        click.echo(f"UI: {url}{suffix}", err=True)
    elif proc.poll() is None:
        click.echo(f"the UI has not answered at {url} after {timeout:.0f}s; it may still be starting", err=True)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
@click.option("--registry", metavar="URL", help="Registry URL (default: the root --url, ADAPTERHUB_URL, else local).")
def ui(host: str, port: int, registry: str | None) -> None:
    """Run the web UI: browse, inspect, compare, evaluate and try adapters. Ctrl-C stops it.

    \b
    Example:
      adapterhub ui --port 8501 --registry http://127.0.0.1:8000
    """
    registry = config.resolve_url(registry or click.get_current_context().find_root().params.get("url"))
    proc = start_ui(registry, host, port)
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    try:
        announce_when_answering(f"http://{local}:{port}", proc, f"  (registry {registry})")
        raise SystemExit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
