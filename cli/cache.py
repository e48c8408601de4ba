"""``adapterhub cache ls | prune``: the local adapter cache under ADAPTERHUB_HOME/cache."""

from __future__ import annotations

import click

from adapterhub.cli.output import emit, human_size, json_option, note, table
from adapterhub.registry import config
from adapterhub.registry.cache import Cache


@click.group()
def cache() -> None:
    """Inspect and clean the local adapter cache.

    \b
    Example:
      adapterhub cache ls
    """


CACHE_COLUMNS = [
    ("adapter", lambda r: r["adapter"]),
    ("versions", lambda r: ", ".join(r["versions"])),
    ("refs", lambda r: ", ".join(f"{k}={v}" for k, v in r["refs"].items())),
    ("size", lambda r: human_size(r["size"])),
]


@cache.command("ls")
@json_option
def ls(as_json: bool) -> None:
    """List cached adapters, their versions, refs and size on disk.

    \b
    Example:
      adapterhub cache ls --json
    """
    emit(Cache(config.cache_dir()).list(), as_json,
         lambda rows: table(rows, CACHE_COLUMNS, empty=f"the cache at {config.cache_dir()} is empty"))


@cache.command()
@json_option
def prune(as_json: bool) -> None:
    """Remove snapshots no ref points to, then blobs no snapshot uses.

    \b
    Example:
      adapterhub cache prune
    """
    out = Cache(config.cache_dir()).prune()
    note(f"removed {len(out['snapshots'])} snapshot(s) and {out['blobs']} blob(s), freed {human_size(out['freed'])}")
    emit(out, as_json, lambda d: "\n".join(d["snapshots"]) or None)
