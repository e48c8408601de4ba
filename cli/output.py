"""One way out for everything the CLI prints: data on stdout (a rich table, or JSON with
``--json``), notes and errors on stderr. Every command declares ``--json`` through `json_option`.

>>> @click.command()
... @json_option
... def hello(as_json):
...     emit({"hello": "world"}, as_json, kv_table)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from adapterhub.units import human_size  # noqa: F401  (re-exported: the commands import it from here)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")


def console(stderr: bool = False) -> Console:
    return Console(file=click.get_text_stream("stderr" if stderr else "stdout"), soft_wrap=False)


def emit(data: Any, as_json: bool, render: Callable[[Any], Any] | None = None) -> None:
    """Print ``data``: as JSON, else as whatever ``render(data)`` builds (a table, a line)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    shown = render(data) if render else data
    if isinstance(shown, str):
        click.echo(shown)
    elif shown is not None:
        console().print(shown)


def note(message: str) -> None:
    """A human note on stderr (so stdout stays clean for pipes and ``--json``)."""
    click.echo(message, err=True)


def short_time(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


def table(rows: Iterable[dict], columns: Sequence[tuple[str, Callable[[dict], Any]]], title: str | None = None,
          empty: str = "nothing to show") -> Table | str:
    """A rich table with one row per dict; ``columns`` are (header, getter) pairs."""
    rows = list(rows)
    if not rows:
        return empty
    t = Table(title=title, show_edge=False, header_style="bold")
    for header, _ in columns:
        t.add_column(header, overflow="fold")
    for row in rows:
        t.add_row(*("" if (v := get(row)) is None else str(v) for _, get in columns))
    return t


def kv_table(data: dict, keys: Sequence[str] | None = None) -> Table:
    """A two-column key/value table for one object."""
    t = Table(show_header=False, show_edge=False, box=None)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key in keys or list(data):
        value = data.get(key)
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        t.add_row(key, "" if value is None else str(value))
    return t
