"""``adapterhub alias set | rm | ls``: names (stable, canary, ...) that point at versions."""

from __future__ import annotations

import click

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, json_option, note, table


@click.group()
def alias() -> None:
    """Point names such as stable or canary at versions.

    \b
    Example:
      adapterhub alias set acme/sentiment stable 1.1.0
    """


@alias.command("set")
@click.argument("ref")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version")
@json_option
def set_(ref: str, alias_name: str, version: str, as_json: bool) -> None:
    """Point ALIAS of REF at VERSION (creating or moving it).

    \b
    Example:
      adapterhub alias set acme/sentiment stable 1.1.0
    """
    out = get_hub().set_alias(ref, alias_name, version)
    note(f"{ref}:{alias_name} -> {version}")
    emit(out, as_json, lambda d: None)


@alias.command("rm")
@click.argument("ref")
@click.argument("alias_name", metavar="ALIAS")
def rm(ref: str, alias_name: str) -> None:
    """Delete ALIAS of REF.

    \b
    Example:
      adapterhub alias rm acme/sentiment canary
    """
    get_hub().delete_alias(ref, alias_name)
    note(f"removed {ref}:{alias_name}")


@alias.command("ls")
@click.argument("ref")
@json_option
def ls(ref: str, as_json: bool) -> None:
    """List the aliases of REF.

    \b
    Example:
      adapterhub alias ls acme/sentiment --json
    """
    aliases = get_hub().aliases(ref)
    rows = [{"alias": k, "version": v} for k, v in sorted(aliases.items())]
    emit(aliases, as_json, lambda _: table(rows, [("alias", lambda r: r["alias"]), ("version", lambda r: r["version"])],
                                           empty="no aliases"))
