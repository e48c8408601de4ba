"""``adapterhub admin backup | restore``: run on the registry's machine, against its database and blobs.

These commands read ``ADAPTERHUB_HOME``, ``ADAPTERHUB_DATABASE_URL`` and ``ADAPTERHUB_BLOB_URL``
exactly as the server does (`Settings.from_env`), so the same environment that starts the server
names what is backed up or restored; the flags override them for one run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from adapterhub.cli.output import console, emit, human_size, json_option, kv_table, note

LABELS = {"verify": "verifying", "blobs": "copying blobs"}


def target_options(command: Callable) -> Callable:
    """``--home``, ``--database-url``, ``--blob-url``: the registry's storage, else the environment's."""
    command = click.option("--blob-url", metavar="URL", help="Blob store (default: ADAPTERHUB_BLOB_URL, "
                           "else HOME/blobs).")(command)
    command = click.option("--database-url", metavar="URL", help="Database (default: ADAPTERHUB_DATABASE_URL, "
                           "else SQLite in HOME).")(command)
    return click.option("--home", type=click.Path(file_okay=False, path_type=Path),
                        help="Registry home (default: ADAPTERHUB_HOME).")(command)


def settings_for(home: Path | None, database_url: str | None, blob_url: str | None):
    """The server's `Settings`, with any flag given taking the place of its variable."""
    from adapterhub.registry.server.settings import Settings

    env = dict(os.environ)
    for key, value in (("ADAPTERHUB_HOME", home), ("ADAPTERHUB_DATABASE_URL", database_url),
                       ("ADAPTERHUB_BLOB_URL", blob_url)):
        if value:
            env[key] = str(value)
    return Settings.from_env(env)


def shown_url(url: str) -> str:
    """A database URL fit to print: the password masked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A byte progress bar per stage on stderr (hidden when stderr is not a terminal)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  console=console(stderr=True), transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(LABELS.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done)

        yield update


def summary_table(d: dict):
    return kv_table({"path": d["path"], "schema": d["schema_revision"], "rows": sum(d["tables"].values()),
                     "blobs": f"{d['blobs']} ({human_size(d['bytes'])})"})


@click.group()
def admin() -> None:
    """Registry administration on the registry's own machine: backup and restore.

    \b
    Example:
      adapterhub admin backup /backups/hub-$(date +%F)
    """


@admin.command()
@click.argument("path", type=click.Path(path_type=Path))
@target_options
@json_option
def backup(path: Path, home: Path | None, database_url: str | None, blob_url: str | None, as_json: bool) -> None:
    """Write every table and every blob to the new folder PATH, with a sha256 manifest.

    The folder appears complete or not at all. The registry may keep running: rows come from one
    snapshot, and blobs never change. SQLite and PostgreSQL backups share one format.

    \b
    Example:
      adapterhub admin backup /backups/hub-2024-06-01
    """
    from adapterhub.registry.server.backup import backup as run_backup

    settings = settings_for(home, database_url, blob_url)
    with progress_bar() as progress:
        out = run_backup(settings, path, progress)
    note(f"backed up {shown_url(settings.database_url)} and {settings.blob_url} to {path}")
    emit(out, as_json, summary_table)


@admin.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@target_options
@click.option("--force", is_flag=True, help="Replace the data of a registry that is not empty.")
@json_option
def restore(path: Path, home: Path | None, database_url: str | None, blob_url: str | None, force: bool,
            as_json: bool) -> None:
    """Load the backup in PATH into an empty registry, after checking every hash in it.

    A damaged backup changes nothing. Stop the servers of the target registry first; the schema
    is migrated to this adapterhub's newest afterwards.

    \b
    Example:
      ADAPTERHUB_DATABASE_URL=postgresql://hub@db/hub adapterhub admin restore /backups/hub-2024-06-01
    """
    from adapterhub.registry.server.restore import restore as run_restore

    settings = settings_for(home, database_url, blob_url)
    with progress_bar() as progress:
        out = run_restore(settings, path, force=force, progress=progress)
    note(f"restored {path} into {shown_url(settings.database_url)} and {settings.blob_url}"
         + (" (replacing its data)" if out["replaced"] else ""))
    emit(out, as_json, summary_table)
