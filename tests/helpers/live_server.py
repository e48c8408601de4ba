"""Start the registry as a real uvicorn subprocess on 127.0.0.1, for tests of server and client.

>>> with run_server(tmp_path) as srv:
...     httpx.get(f"{srv.url}/api/v1/health").json()
{'status': 'ok'}

``postgres_url()`` creates a fresh, uniquely named PostgreSQL database and ``drop_postgres(url)``
removes it, so parallel test sessions never share state.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

POSTGRES_ADMIN_URL = os.environ.get("ADAPTERHUB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class ServerHandle:
    url: str
    admin_token: str
    process: subprocess.Popen
    home: Path
    database_url: str | None = None
    port: int = 0
    log_path: Path | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    home: Path,
    database_url: str | None = None,
    admin_token: str = "admin-secret",
    env: dict | None = None,
    port: int | None = None,
    timeout: float = 30.0,
) -> ServerHandle:
    """Start a server process and wait until it answers; the caller must `stop_server` it."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERHUB_")}
    full_env.update({"ADAPTERHUB_HOME": str(home), "ADAPTERHUB_ADMIN_TOKEN": admin_token})
    if database_url:
        full_env["ADAPTERHUB_DATABASE_URL"] = database_url
    full_env.update(env or {})
    log_path = home / f"server-{port}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapterhub.registry.server", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    handle = ServerHandle(f"http://127.0.0.1:{port}", admin_token, proc, home, database_url, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"registry server exited with {proc.returncode}:\n{handle.log()}")
        try:
            if httpx.get(f"{handle.url}/api/v1/health", timeout=1.0).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    stop_server(handle)
    raise RuntimeError(f"registry server did not start within {timeout}s:\n{handle.log()}")


def stop_server(handle: ServerHandle, kill: bool = False) -> None:
    """Terminate (or ``kill -9``) the server process and reap it."""
    proc = handle.process
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_server(
    home: Path,
    database_url: str | None = None,
    admin_token: str = "admin-secret",
    env: dict | None = None,
) -> Iterator[ServerHandle]:
    handle = start_server(home, database_url, admin_token, env)
    try:
        yield handle
    finally:
        stop_server(handle)


def postgres_url() -> str:
    """Create a fresh database ``adapterhub_test_<hex>`` and return its URL."""
    import psycopg

    name = f"adapterhub_test_{uuid.uuid4().hex}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres(url: str) -> None:
    """Drop a database made by `postgres_url` (terminating leftover connections)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    url = postgres_url()
    try:
        yield url
    finally:
        drop_postgres(url)
