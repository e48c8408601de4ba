"""``adapterhub namespace | user | token`` and ``push --create-namespace`` against a real registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapterhub.cli.token import Expiry
from tests.cli.support import js, ok, run
from tests.client.support import make_adapter


def test_namespace_create_list_show_with_private_and_json(online):
    made = js("namespace", "create", "team-x", "--private")
    assert (made["name"], made["private"], made["owner"]) == ("team-x", True, "admin")
    result = ok("namespace", "create", "team-y")
    assert "namespace team-y (public); push into it: adapterhub push FOLDER team-y/NAME" in result.stderr
    assert "team-y" in result.stdout and "public" in result.stdout
    result = run("namespace", "create", "team-y")
    assert (result.exit_code, result.output) == (
        1, "Error: the registry refused: namespace 'team-y' exists [NamespaceExists]\n")
    assert js("namespace", "create", "team-y", "--exist-ok")["private"] is False
    listed = {n["name"]: n for n in js("namespace", "list")}
    assert listed["team-x"]["private"] is True and listed["team-y"]["owner"] == "admin"
    assert "team-x" in ok("namespace", "list").stdout
    assert js("namespace", "show", "team-x")["private"] is True
    anonymous = run("namespace", "show", "team-x", env={"ADAPTERHUB_TOKEN": ""})  # no stored login either
    assert anonymous.exit_code == 1 and anonymous.output.startswith("Error: not found: namespace 'team-x' not found")
    assert "team-x" not in [n["name"] for n in js("namespace", "list", env={"ADAPTERHUB_TOKEN": ""})]


def test_user_create_and_list_are_for_admins(online):
    result = ok("user", "create", "erin")
    assert result.stdout == ""
    assert "adapterhub token create --user erin --scope write --namespace erin" in result.stderr
    assert js("user", "create", "frank") == {"name": "frank"}
    users = {u["name"]: u for u in js("user", "list")}
    assert users["admin"]["is_admin"] is True and users["erin"]["is_admin"] is False
    assert "erin" in ok("user", "list").stdout
    token = ok("token", "create", "--user", "erin", "--scope", "write", "--namespace", "erin").stdout.strip()
    result = run("user", "list", env={"ADAPTERHUB_TOKEN": token})
    assert result.exit_code == 1 and result.output.startswith("Error: not authorised: only an admin may list users")


def test_token_create_prints_the_secret_alone_once_then_list_and_revoke(online):
    ok("user", "create", "gina")
    result = ok("token", "create", "--user", "gina", "--scope", "write", "--namespace", "gina", "--expires", "90d",
                "--name", "laptop")
    secret = result.stdout.strip()
    assert result.stdout == secret + "\n" and secret.startswith("ah_")
    assert secret not in result.stderr and "shown once" in result.stderr
    assert result.stderr.startswith("token ") and "for gina (laptop): write on gina, expires " in result.stderr
    child = js("token", "create", "--scope", "read", "--namespace", "gina", "--name", "ci",
               env={"ADAPTERHUB_TOKEN": secret})  # --user defaults to the caller
    assert (child["user"], child["scope"], child["namespaces"], child["name"]) == ("gina", "read", ["gina"], "ci")
    assert child["token"].startswith("ah_") and child["expires_at"]  # clamped to the minting token's
    rows = js("token", "list", env={"ADAPTERHUB_TOKEN": secret})
    assert [(t["name"], t["current"]) for t in rows] == [("laptop", True), ("ci", False)]
    table = ok("token", "list", env={"ADAPTERHUB_TOKEN": secret}).stdout
    assert "this token" in table and "active" in table and secret not in table and child["token"] not in table
    assert [t["name"] for t in js("token", "list", "--user", "gina")] == ["laptop", "ci"]  # the admin asks
    result = ok("token", "revoke", str(child["id"]), env={"ADAPTERHUB_TOKEN": secret})
    assert result.stderr == f"revoked token {child['id']} and every token minted from it\n"
    assert "revoked" in ok("token", "list", "--user", "gina").stdout
    result = run("whoami", env={"ADAPTERHUB_TOKEN": child["token"]})
    assert result.exit_code == 1 and "was revoked" in result.output
    result = run("token", "revoke", "999999")
    assert (result.exit_code, result.output) == (1, "Error: not found: no token 999999\n")


@pytest.mark.parametrize(("text", "problem"), [
    ("2001-01-01", "'2001-01-01' is in the past"),
    ("soon", "'soon' is neither a lifetime (30d, 12h, 90m, 2w), a date or ISO time"),
    ("0d", "'0d' is no lifetime: give at least 1d"),
])
def test_token_create_refuses_a_bad_expiry_before_asking_the_registry(text, problem):
    result = run("token", "create", "--expires", text)
    assert result.exit_code == 2 and problem in result.output


def test_expiry_reads_lifetimes_dates_and_never():
    expiry = Expiry()
    assert expiry.convert("12h", None, None) == timedelta(hours=12)
    assert expiry.convert("2w", None, None) == timedelta(weeks=2)
    assert expiry.convert("never", None, None) is None
    assert expiry.convert("2999-01-31", None, None) == datetime(2999, 1, 31, tzinfo=UTC)
    later = expiry.convert("2999-01-31T12:00:00+02:00", None, None)
    assert later.utcoffset() == timedelta(hours=2)


def test_push_into_a_missing_namespace_says_how_to_create_it_and_create_namespace_does(online, tmp_path):
    folder = make_adapter(tmp_path / "a")
    result = run("push", folder, "fresh-ns/thing", "--version", "1.0.0")
    assert result.exit_code == 1
    assert result.output == (
        "Error: not found: namespace 'fresh-ns' does not exist (or your token may not read it): create it with "
        "`adapterhub namespace create fresh-ns` (add --private to hide it), or push with --create-namespace\n")
    out = js("push", folder, "fresh-ns/thing", "--version", "1.0.0", "--create-namespace")
    assert out["version"] == "1.0.0"
    assert js("namespace", "show", "fresh-ns")["owner"] == "admin"
