"""What "a refusal changed nothing" means, read from the outside: every database row, every blob
on disk, every file of a folder (the client cache), before and after.

>>> before = registry_state(srv.home)                        # doctest: +SKIP
>>> ...  # send the bad request
>>> assert_still(before, lambda: registry_state(srv.home))    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def registry_state(home: Path) -> dict[str, Any]:
    """Every row of every table of an embedded (SQLite) registry, and every file under its blob folder."""
    db = sqlite3.connect(f"file:{home / 'registry.sqlite'}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows = {t: sorted(repr(r) for r in db.execute(f'SELECT * FROM "{t}"')) for t in tables}
    finally:
        db.close()
    return {"rows": rows, "blobs": folder_state(home / "blobs")}


def folder_state(folder: Path) -> list[tuple[str, int, str]]:
    """``(relative path, size, sha256)`` of every file below ``folder`` (symlinks as their target)."""
    if not folder.exists():
        return []
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
                  for p in folder.rglob("*") if p.is_file())


def assert_still(before: Any, read: Callable[[], Any], settle_s: float = 5.0) -> None:
    """Assert ``read()`` equals ``before``; a server finishes cleaning up a dropped upload after the
    client has gone, so a difference is re-read for up to ``settle_s`` before it counts."""
    deadline = time.monotonic() + settle_s
    after = read()
    while after != before and time.monotonic() < deadline:
        time.sleep(0.05)
        after = read()
    assert after == before


def database_state(server) -> dict[str, list[str]]:
    """Every row of every table of a running registry's database, SQLite or PostgreSQL alike."""
    from sqlalchemy import create_engine, inspect, text

    from adapterhub.registry.server.settings import normalize_database_url

    url = normalize_database_url(server.database_url) if server.database_url else \
        f"sqlite:///{server.home / 'registry.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: sorted(repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{t}"')))
                    for t in sorted(inspect(conn).get_table_names())}
    finally:
        engine.dispose()
