"""Alembic migrations bring an empty database to head, on SQLite and on PostgreSQL, matching the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import SQLModel

from adapterhub.registry.server import db
from adapterhub.registry.server.settings import normalize_database_url
from tests.helpers.live_server import fresh_postgres


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite'}"
    else:
        with fresh_postgres() as url:
            yield url


def test_upgrade_empty_database_to_head(empty_url):
    engine = db.make_engine(normalize_database_url(empty_url))
    try:
        assert inspect(engine).get_table_names() == []
        db.upgrade(engine)
        db.upgrade(engine)  # idempotent: a second start changes nothing
        head = ScriptDirectory.from_config(db.alembic_config(engine)).get_current_head()
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn)
            assert ctx.get_current_revision() == head
            assert compare_metadata(ctx, SQLModel.metadata) == []
        assert set(inspect(engine).get_table_names()) == set(SQLModel.metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()


def test_sqlite_uses_wal_and_foreign_keys(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_postgresql_url_is_rewritten_to_psycopg():
    from adapterhub.registry.server.settings import Settings

    s = Settings.from_env({"ADAPTERHUB_HOME": "/tmp/x", "ADAPTERHUB_DATABASE_URL": "postgresql://u@h:5432/d"})
    assert s.database_url == "postgresql+psycopg://u@h:5432/d"
    d = Settings.from_env({"XDG_DATA_HOME": "/data"})
    assert d.home.as_posix() == "/data/adapterhub"
    assert d.database_url == "sqlite:////data/adapterhub/registry.sqlite"
    assert d.blob_url == "file:///data/adapterhub/blobs"
