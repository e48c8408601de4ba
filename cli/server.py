"""``adapterhub serve`` (the registry in this process) and ``adapterhub up`` (the local stack).

``up`` runs each service as a child process so that it can wait for the registry, then run
the later steps (`UP_STEPS`: seeding, the UI) against it, and stop every child on Ctrl-C.
"""

from __future__ import annotations

import importlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import httpx

import adapterhub
from adapterhub.cli.output import note
from adapterhub.registry import config


def _server_serve() -> Callable:
    """The server package's ``serve``, imported only when a command needs it (it pulls FastAPI)."""
    package = importlib.import_module("adapterhub.registry.server")
    serve = getattr(package, "serve", None)
    return serve or importlib.import_module("adapterhub.registry.server.app").serve


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Run the registry server in the foreground (settings from ADAPTERHUB_* variables).

    The admin token is ADAPTERHUB_ADMIN_TOKEN when it is set (as for `adapterhub up`); without
    it, the first start makes one, prints it once and keeps only its hash.

    \b
    Example:
      ADAPTERHUB_DATABASE_URL=postgresql://hub@db/hub adapterhub serve --host 0.0.0.0 --port 8000
    """
    _server_serve()(host=host, port=port)


ADMIN_TOKEN_VAR = "ADAPTERHUB_ADMIN_TOKEN"


def admin_token(home: Path, environ: dict | None = None) -> tuple[str, str]:
    """The admin token ``up`` gives its registry, and where it came from: one rule with ``serve``,
    ``ADAPTERHUB_ADMIN_TOKEN`` first (``"env"``); else the one kept in HOME/admin_token (``"file"``),
    made and stored 0600 on first start (``"new"``), so the local hub keeps one admin across restarts."""
    from_env = (os.environ if environ is None else environ).get(ADMIN_TOKEN_VAR, "").strip()
    if from_env:
        return from_env, "env"
    path = home / "admin_token"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip(), "file"
    token = "ah_admin_" + secrets.token_urlsafe(32)
    config.write_private(path, token + "\n")
    return token, "new"


def _tell_admin_token(home: Path, token: str, source: str) -> None:
    """Say which admin token the registry honours; the secret itself only when it was just made."""
    path = home / "admin_token"
    if source == "new":
        login = config.read_token() is None
        if login:
            config.store_token(token)  # before the line is printed: whoever reads it may use it at once
        click.echo(f"admin token (shown once; also in {path}): {token}")
        if login:
            note("stored it as your login token (adapterhub logout to forget it)")
        return
    if source == "env":
        hint = "" if config.resolve_token() == token else "; `adapterhub login` (paste it) lets the CLI use it"
        note(f"admin token: {ADMIN_TOKEN_VAR} (the rule `adapterhub serve` follows too){hint}")
        stale = path.is_file() and path.read_text().strip()
        if stale and stale != token and config.read_token() == stale:
            note(f"note: your stored login is the token in {path}, which this registry refuses while "
                 f"{ADMIN_TOKEN_VAR} is set")


def start_registry(host: str, port: int, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "adapterhub.registry.server", "--host", host, "--port", str(port)]
    return subprocess.Popen(cmd, env=env)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"the registry exited with status {proc.returncode} before answering at {url}")
        if _answers(url):
            return
        time.sleep(0.1)
    raise click.ClickException(f"the registry did not answer at {url} within {timeout:.0f}s")


def seed_root() -> Path | None:
    """The seed adapters' folder, found from the installed package rather than the current
    directory, so ``adapterhub up`` seeds the same adapters wherever it is started.

    A wheel ships them inside the package (``adapterhub/seed_adapters``, a package-dir entry in
    pyproject.toml); a source checkout, installed editable, has them beside ``adapterhub/`` at the
    repository root. None when neither is there (a build that left them out).
    """
    package = Path(adapterhub.__file__).resolve().parent  # resolve(): a strict editable install links files
    for candidate in (package / "seed_adapters", package.parent / "seed_adapters"):
        if candidate.is_dir() and any(candidate.glob("*/adapterhub.json")):
            return candidate
    return None


def seed_step(url: str, token: str, first_start: bool) -> subprocess.Popen | None:
    """Publish the seed adapters (`seed_root`) on every start; already published ones are skipped."""
    root = seed_root()
    if root is None:
        note("this installation has no seed adapters (seed_adapters/ was not shipped): "
             "starting with an empty registry; `adapterhub seed --from DIR` publishes some later")
        return None
    from adapterhub.registry.client import Hub
    from adapterhub.registry.seeding import seed_registry

    with Hub(url=url, token=token) as hub:
        pushed = seed_registry(hub, root, say=lambda line: note(line))
    if pushed:
        click.echo(f"published {len(pushed)} seed adapter(s) from {root}/")
    return None


def base_step(url: str, token: str, first_start: bool) -> subprocess.Popen | None:
    """Register the catalogue's bases that are installed, mirrored, before the seeds that use them
    are pushed (so the registry checks them); ones already registered are left as they are.
    ``ADAPTERHUB_BASES=0`` skips this step."""
    if os.environ.get("ADAPTERHUB_BASES", "1").lower() in ("0", "false", "no", "off"):
        return None
    import importlib.util

    from adapterhub.cli.base import register_catalogue_or_folder
    from adapterhub.compose.workflows.catalog import CATALOGUE
    from adapterhub.errors import AdapterHubError, AdapterNotFoundError
    from adapterhub.registry.client import Hub

    with Hub(url=url, token=token) as hub:
        have = {b["id"] for b in hub.bases()}
        for entry in CATALOGUE.values():
            if entry.hub_id in have or importlib.util.find_spec(entry.module) is None:
                continue
            try:
                register_catalogue_or_folder(hub, entry.name, None, (), True)
            except (AdapterHubError, AdapterNotFoundError) as exc:
                note(f"could not register the base {entry.hub_id}: {exc}")
    return None


def ui_step(url: str, token: str, first_start: bool) -> subprocess.Popen | None:
    """Start the Streamlit UI (adapterhub.web) against ``url`` on ADAPTERHUB_UI_PORT (default 8501,
    else a free port when that one is taken); ``ADAPTERHUB_UI=0`` skips it."""
    if os.environ.get("ADAPTERHUB_UI", "1").lower() in ("0", "false", "no", "off"):
        return None
    import importlib.util

    if importlib.util.find_spec("streamlit") is None:
        note("the UI needs streamlit (pip install streamlit); running without it")
        return None
    from adapterhub.cli.ui import announce_when_answering, pick_port, start_ui

    port = pick_port(int(os.environ.get("ADAPTERHUB_UI_PORT", "8501")))
    proc = start_ui(url, "127.0.0.1", port)
    announce_when_answering(f"http://127.0.0.1:{port}", proc)
    return proc  # one that exited meanwhile is caught by `up`'s watch loop


# run in order once the registry answers; a step that starts a service returns its process
UP_STEPS: list[Callable[[str, str, bool], subprocess.Popen | None]] = [base_step, seed_step, ui_step]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def up(host: str, port: int) -> None:
    """Start the local hub: the registry with SQLite under ADAPTERHUB_HOME, its seed adapters and
    the UI (ADAPTERHUB_UI=0 skips it; its URL is printed once it answers). Ctrl-C stops it.

    The admin token is ADAPTERHUB_ADMIN_TOKEN when it is set, as for `adapterhub serve`; else
    the one in ADAPTERHUB_HOME/admin_token, made on first start, printed once and stored as your
    login.

    \b
    Example:
      adapterhub up --port 8000
    """
    home = config.home()
    home.mkdir(parents=True, exist_ok=True)
    token, source = admin_token(home)
    first = source == "new"
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if _answers(url):
        raise click.ClickException(f"something already answers at {url}; stop it or pick another --port")
    env = {**os.environ, "ADAPTERHUB_HOME": str(home), ADMIN_TOKEN_VAR: token}
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the children too, like Ctrl-C
    procs = [start_registry(host, port, env)]
    try:
        wait_healthy(url, procs[0])
        click.echo(f"registry: {url}  (data in {home})")
        _tell_admin_token(home, token, source)
        if url != config.DEFAULT_URL:
            note(f"point the CLI at it: export ADAPTERHUB_URL={url}")
        procs += [p for step in UP_STEPS if (p := step(url, token, first)) is not None]
        note("press Ctrl-C to stop")
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        failed = next(p for p in procs if p.poll() is not None)
        raise click.ClickException(f"a service exited with status {failed.returncode}; stopping the others")
    except KeyboardInterrupt:
        note("stopping ...")
    finally:
        stop(procs)
