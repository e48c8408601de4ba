"""``adapterhub token create | list | revoke``: the tokens that say who may read and write what.

A token has a scope (read < write < admin), the namespaces it covers (``*``: those its user
owns) and an expiry. The secret is printed once, alone on stdout, so it can be captured:
``TOKEN=$(adapterhub token create --user alice --scope write --namespace acme)``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, json_option, note, short_time, table

UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION = re.compile(r"(\d{1,6})([mhdw])")


class Expiry(click.ParamType):
    """``30d``, ``12h``, ``90m``, ``2w`` from now; a date or ISO time (UTC unless it says otherwise); ``never``."""

    name = "WHEN"

    def convert(self, value, param, ctx) -> datetime | timedelta | None:
        if isinstance(value, datetime | timedelta) or value is None:
            return value
        text = str(value).strip().lower()
        if text == "never":
            return None
        if m := DURATION.fullmatch(text):
            if int(m[1]) == 0:
                self.fail(f"{value!r} is no lifetime: give at least 1{m[2]}", param, ctx)
            return timedelta(**{UNITS[m[2]]: int(m[1])})
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is neither a lifetime (30d, 12h, 90m, 2w), a date or ISO time "
                      f"(2030-01-31, 2030-01-31T12:00:00+02:00), nor 'never'", param, ctx)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
        if when <= datetime.now(UTC):
            self.fail(f"{value!r} is in the past: a token that has expired already is of no use", param, ctx)
        return when


def _status(t: dict) -> str:
    if t.get("current"):
        return "this token"  # the one asking is active by definition
    if t.get("revoked_at"):
        return f"revoked {short_time(t['revoked_at'])}"
    if t.get("expires_at") and datetime.fromisoformat(str(t["expires_at"]).replace("Z", "+00:00")) <= datetime.now(UTC):
        return "expired"
    return "active"


TOKEN_COLUMNS = [
    ("id", lambda t: t["id"]),
    ("name", lambda t: t.get("name")),
    ("scope", lambda t: t.get("scope")),
    ("namespaces", lambda t: ", ".join(t.get("namespaces", []))),
    ("created", lambda t: short_time(t.get("created_at"))[:10]),
    ("expires", lambda t: short_time(t.get("expires_at")) or "never"),
    ("status", _status),
]


@click.group()
def token() -> None:
    """Tokens: mint one for a user, list them, revoke one (and every token minted from it).

    Admins mint for anyone; a user mints for themselves within their own token's reach (no higher
    scope, no other namespace, no later expiry).

    \b
    Examples:
      adapterhub token create --user alice --scope write --namespace acme --expires 90d --name laptop
      adapterhub token list --user alice
      adapterhub token revoke 3
    """


@token.command("create")
@click.option("--user", metavar="NAME", help="Whose token (default: yours).")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), default="read", show_default=True,
              help="read: private namespaces it covers; write: also push, alias, yank, roll out; admin: everything.")
@click.option("--namespace", "namespaces", metavar="NS", multiple=True,
              help="A namespace it covers; repeat for several (default: *, the namespaces the user owns).")
@click.option("--expires", type=Expiry(), default="never", show_default=True,
              help="30d, 12h, 90m, 2w, a date or ISO time, or never (a user's own: at most their token's).")
@click.option("--name", default="", metavar="TEXT", help="A label to tell tokens apart in `token list`.")
@json_option
def create(user: str | None, scope: str, namespaces: tuple[str, ...], expires, name: str, as_json: bool) -> None:
    """Mint a token and print its secret once (stdout alone; the details go to stderr).

    \b
    Examples:
      adapterhub token create --user alice --scope write --namespace acme --expires 90d
      TOKEN=$(adapterhub token create --scope read --namespace acme --expires 12h)
    """
    hub = get_hub()
    who = user or hub.whoami()["user"]
    out = hub.create_token(who, scope=scope, namespaces=list(namespaces) or ["*"], expires_at=expires, name=name)
    until = f"expires {short_time(out.get('expires_at'))} UTC" if out.get("expires_at") else "never expires"
    note(f"token {out['id']} for {who}{f' ({name})' if name else ''}: {scope} on {', '.join(namespaces) or '*'}, {until}; "
         "the secret below is shown once: store it now")
    emit({**out, "user": who, "scope": scope, "namespaces": list(namespaces) or ["*"], "name": name}, as_json,
         lambda d: d["token"])


@token.command("list")
@click.option("--user", metavar="NAME", help="Another user's tokens (admins only; default: yours).")
@json_option
def list_(user: str | None, as_json: bool) -> None:
    """List your tokens (those your token may see), revoked and expired ones too; never a secret.

    \b
    Example:
      adapterhub token list --user alice
    """
    rows = get_hub().list_tokens(user)
    whose = f"tokens of {rows[0]['user']}" if rows else None
    emit(rows, as_json, lambda r: table(r, TOKEN_COLUMNS, title=whose, empty="no tokens"))


@token.command("revoke")
@click.argument("token_id", metavar="ID", type=click.IntRange(1, 2**31 - 1))
@json_option
def revoke(token_id: int, as_json: bool) -> None:
    """Revoke the token ID (see `token list`) and every token minted from it, at once.

    \b
    Example:
      adapterhub token revoke 3
    """
    get_hub().revoke_token(token_id)
    note(f"revoked token {token_id} and every token minted from it")
    emit({"id": token_id, "revoked": True}, as_json, lambda d: None)
