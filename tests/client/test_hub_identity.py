"""`Hub`'s identity calls against a real registry: users, tokens, namespaces, and a push into a
namespace that does not exist (refused, naming the command that creates it, unless asked to)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapterhub.errors import AdapterNotFoundError, AuthenticationError, InvalidReferenceError
from adapterhub.registry.client import Hub
from tests.client.support import make_adapter


def test_an_admin_creates_a_user_who_mints_lists_and_revokes_their_own_tokens(online):
    with Hub() as admin:
        assert admin.create_user("carol") == {"name": "carol"}
        assert "carol" in [u["name"] for u in admin.list_users()]
        made = admin.create_token("carol", scope="write", namespaces=["carol"], expires_at=timedelta(days=30),
                                  name="laptop")
        expires = datetime.fromisoformat(made["expires_at"].replace("Z", "+00:00"))
        assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
        assert made["token"].startswith("ah_")
    with Hub(token=made["token"]) as carol:
        assert carol.whoami()["user"] == "carol"
        child = carol.create_token(scope="read", namespaces=["carol"], name="ci")  # user: the caller's own
        rows = carol.list_tokens()
        assert [(t["id"], t["name"], t["scope"], t["current"]) for t in rows] == [
            (made["id"], "laptop", "write", True), (child["id"], "ci", "read", False)]
        assert rows[1]["expires_at"] == rows[0]["expires_at"]  # no expiry asked: the minting token's
        assert made["token"] not in str(rows) and child["token"] not in str(rows)
        carol.revoke_token(child["id"])
        assert carol.list_tokens()[1]["revoked_at"] is not None
        with pytest.raises(AuthenticationError, match="only an admin may list users"):
            carol.list_users()
        with pytest.raises(AuthenticationError, match="only an admin may list another user's tokens"):
            carol.list_tokens("admin")
    with Hub(token=child["token"]) as revoked, pytest.raises(AuthenticationError, match="was revoked"):
        revoked.whoami()


def test_identity_calls_refuse_a_bad_name_before_sending_it(online):
    with Hub() as hub:
        with pytest.raises(InvalidReferenceError, match="invalid user name 'Carol'"):
            hub.create_user("Carol")
        with pytest.raises(InvalidReferenceError, match="invalid namespace 'A B'"):
            hub.create_token("admin", namespaces=["A B"])
        with pytest.raises(InvalidReferenceError, match="invalid user name '../x'"):
            hub.list_tokens("../x")


def test_list_namespaces_shows_a_private_one_only_to_its_readers(online):
    with Hub() as admin:
        admin.create_namespace("ledger", private=True)
        admin.create_namespace("open-books")
        seen = {n["name"]: n for n in admin.list_namespaces()}
        assert seen["ledger"]["private"] is True and seen["open-books"]["owner"] == "admin"
    with Hub(anonymous=True) as anonymous:
        names = [n["name"] for n in anonymous.list_namespaces()]
        assert "open-books" in names and "ledger" not in names


def test_a_push_into_a_missing_namespace_names_the_command_that_creates_it(online, tmp_path):
    folder = make_adapter(tmp_path / "a")
    with Hub(progress=False) as hub:
        with pytest.raises(AdapterNotFoundError) as info:
            hub.push(folder, "nowhere/thing", version="1.0.0")
        assert str(info.value) == (
            "namespace 'nowhere' does not exist (or your token may not read it): create it with "
            "`adapterhub namespace create nowhere` (add --private to hide it), or push with --create-namespace")
        assert info.value.status == 404 and info.value.reference == "nowhere/thing"
        assert "nowhere" not in [n["name"] for n in hub.list_namespaces()]  # nothing was made
        out = hub.push(folder, "nowhere/thing", version="1.0.0", create_namespace=True)
        assert out["version"] == "1.0.0"
        assert hub.namespace("nowhere")["private"] is False
        assert hub.push(folder, "nowhere/thing", version="1.0.1", create_namespace=True)["version"] == "1.0.1"


def test_create_namespace_on_push_cannot_reach_into_someone_elses_private_namespace(online, tmp_path):
    with Hub() as admin:
        admin.create_namespace("sealed", private=True)
        admin.create_user("dave")
        token = admin.create_token("dave", scope="write", namespaces=["*"])["token"]
    with Hub(token=token, progress=False) as dave, pytest.raises(AdapterNotFoundError) as info:
        dave.push(make_adapter(tmp_path / "a"), "sealed/thing", version="1.0.0", create_namespace=True)
    assert str(info.value) == ("namespace 'sealed' is taken and your token may not read it; "
                               "push to a namespace of yours instead")
