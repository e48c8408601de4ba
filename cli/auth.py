"""``adapterhub login | logout | whoami``: the token the CLI and `Hub` use."""

from __future__ import annotations

import os

import click

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, json_option, kv_table, note
from adapterhub.registry import config


@click.command()
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input instead of prompting.")
@json_option
def login(token_stdin: bool, as_json: bool) -> None:
    """Check a token against the registry and store it (mode 0600) for later commands.

    The token is read without echo and never printed.

    \b
    Example:
      adapterhub login
      echo "$TOKEN" | adapterhub login --token-stdin
    """
    if token_stdin:
        token = click.get_text_stream("stdin").readline().strip()
    else:
        token = click.prompt("Token", hide_input=True).strip()
    if not token:
        raise click.UsageError("empty token")
    hub = get_hub(token=token)
    who = hub.whoami()
    path = config.store_token(token)
    note(f"logged in to {hub.url} as {who.get('user')}; token stored in {path}")
    if os.environ.get("ADAPTERHUB_TOKEN"):
        note("note: ADAPTERHUB_TOKEN is set and takes precedence over the stored token")
    emit({"url": hub.url, "user": who.get("user"), "token_path": str(path)}, as_json, lambda d: None)


@click.command()
def logout() -> None:
    """Forget the stored token.

    \b
    Example:
      adapterhub logout
    """
    removed = config.delete_token()
    note(f"removed {config.token_path()}" if removed else "no stored token: nothing to do")


@click.command()
@json_option
def whoami(as_json: bool) -> None:
    """Show who the current token belongs to, and its scopes.

    \b
    Example:
      adapterhub whoami --json
    """
    hub = get_hub()
    who = hub.whoami()
    scopes = ", ".join(f"{s.get('scope')}:{s.get('namespace')}" for s in who.get("scopes", []))
    emit(who, as_json, lambda d: kv_table({"user": d.get("user"), "admin": d.get("is_admin"),
                                            "scopes": scopes, "registry": hub.url}))
