"""``adapterhub namespace create | list | show``: where adapters live, public or private."""

from __future__ import annotations

import click

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, json_option, kv_table, note, short_time, table

NAMESPACE_COLUMNS = [
    ("namespace", lambda n: n["name"]),
    ("visibility", lambda n: "private" if n.get("private") else "public"),
    ("owner", lambda n: n.get("owner")),
    ("created", lambda n: short_time(n.get("created_at"))),
]


def _one(d: dict):
    return kv_table({"namespace": d["name"], "visibility": "private" if d.get("private") else "public",
                     "owner": d.get("owner"), "created": short_time(d.get("created_at"))})


@click.group()
def namespace() -> None:
    """Namespaces: the first half of every reference (acme in acme/sentiment).

    A namespace belongs to whoever created it; a private one is invisible to tokens that do not
    cover it. Names are global: a taken name is refused, private or not.

    \b
    Examples:
      adapterhub namespace create acme
      adapterhub namespace create acme-internal --private
      adapterhub namespace list
    """


@namespace.command("create")
@click.argument("name")
@click.option("--private", is_flag=True, help="Only tokens that cover it may see it or its adapters.")
@click.option("--exist-ok", is_flag=True, help="Succeed if it exists already (leaving it as it is).")
@json_option
def create(name: str, private: bool, exist_ok: bool, as_json: bool) -> None:
    """Create the namespace NAME, owned by you (needs a write token).

    \b
    Example:
      adapterhub namespace create acme --private
    """
    out = get_hub().create_namespace(name, private, exist_ok=exist_ok)
    note(f"namespace {out['name']} ({'private' if out.get('private') else 'public'}); "
         f"push into it: adapterhub push FOLDER {out['name']}/NAME --version 1.0.0")
    emit(out, as_json, _one)


@namespace.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List the namespaces you may read: every public one, and the private ones your token covers.

    \b
    Example:
      adapterhub namespace list --json
    """
    rows = get_hub().list_namespaces()
    emit(rows, as_json, lambda r: table(r, NAMESPACE_COLUMNS, empty="no namespaces yet: adapterhub namespace create NAME"))


@namespace.command("show")
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Show the namespace NAME: visibility, owner, creation time.

    \b
    Example:
      adapterhub namespace show acme
    """
    emit(get_hub().namespace(name), as_json, _one)
