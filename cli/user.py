"""``adapterhub user create | list``: accounts on the registry (admin only)."""

from __future__ import annotations

import click

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, json_option, note, short_time, table

USER_COLUMNS = [
    ("user", lambda u: u["name"]),
    ("admin", lambda u: "yes" if u.get("is_admin") else ""),
    ("created", lambda u: short_time(u.get("created_at"))),
]


@click.group()
def user() -> None:
    """Users (admin only). A user owns the namespace of their name and holds tokens.

    \b
    Examples:
      adapterhub user create alice
      adapterhub token create --user alice --scope write --namespace alice
    """


@user.command("create")
@click.argument("name")
@json_option
def create(name: str, as_json: bool) -> None:
    """Create the user NAME and the namespace NAME they own (needs an admin token).

    The user has no token yet: mint one with `adapterhub token create --user NAME`.

    \b
    Example:
      adapterhub user create alice
    """
    out = get_hub().create_user(name)
    note(f"created user {out['name']} and namespace {out['name']}; give them a token: "
         f"adapterhub token create --user {out['name']} --scope write --namespace {out['name']}")
    emit(out, as_json, lambda d: None)


@user.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List every user (needs an admin token).

    \b
    Example:
      adapterhub user list
    """
    emit(get_hub().list_users(), as_json, lambda rows: table(rows, USER_COLUMNS, empty="no users"))
