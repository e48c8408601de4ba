"""Engines and migrations: SQLite (WAL, foreign keys on) by default, PostgreSQL by URL.

SQLite write transactions start with ``BEGIN IMMEDIATE`` (reads stay ``BEGIN``) so that
concurrent writers queue on the busy timeout instead of failing on a lock upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from filelock import FileLock
from sqlalchemy import Engine, create_engine, event

from adapterhub.registry.server.validation import ValidationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def refuse_nul(engine: Engine) -> Engine:
    """Refuse any text parameter holding a NUL (U+0000) before it reaches the database, with a 422.

    PostgreSQL cannot store or even compare such text (the query fails: a 500), SQLite would keep
    it; no name, version, tag or text of ours needs one. Checked at this one boundary, after the
    specific validators (names, paths, versions) have had their say, so nothing is missed."""

    @event.listens_for(engine, "before_cursor_execute")
    def _no_nul(_conn, _cursor, _statement, parameters, _context, _executemany):
        for value in _strings(parameters):
            if "\x00" in value:
                raise ValidationError("InvalidRequest",
                                      f"invalid request: NUL (\\x00) characters are not allowed: {value[:100]!r}")

    return engine


def _strings(parameters: object) -> Iterator[str]:
    """Every string in the parameters of an execute: a dict, a row, many rows, or one flat batch."""
    if isinstance(parameters, str):
        yield parameters
    elif isinstance(parameters, dict):
        for value in parameters.values():
            yield from _strings(value)
    elif isinstance(parameters, list | tuple):
        for value in parameters:
            yield from _strings(value)


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``; the parent folder of a SQLite file is created."""
    if not is_sqlite(url):
        return refuse_nul(create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20))
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # a pool as large as the server's thread pool: reopening connections (and re-running the
    # PRAGMAs below) under concurrent load cost more than the queries themselves
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60}, pool_size=40, max_overflow=10)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA mmap_size=268435456")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return refuse_nul(engine)


def writer(engine: Engine) -> Engine:
    """The engine to use for a write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
    return engine.execution_options(sqlite_immediate=True) if is_sqlite(str(engine.url)) else engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (on start, and in tests).

    Concurrent starts migrate one at a time: a file lock beside a SQLite database, an advisory
    lock on PostgreSQL (in ``migrations/env.py``).
    """
    url = str(engine.url)
    path = url.split("///", 1)[1] if is_sqlite(url) and "///" in url else ""
    if path and path != ":memory:":
        with FileLock(path + ".migrate.lock"):
            command.upgrade(alembic_config(engine), revision)
    else:
        command.upgrade(alembic_config(engine), revision)
