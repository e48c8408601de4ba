"""`Hub`'s read helpers and namespaces against a real registry: cursor pages, files, the audit log."""

from __future__ import annotations

import pytest

from adapterhub.errors import AdapterNotFoundError, AuthenticationError, InvalidAdapterError, RegistryError
from adapterhub.registry.client import Hub
from tests.client.support import make_adapter


def _names(items: list[dict]) -> list[str]:
    return [f"{a['namespace']}/{a['name']}" for a in items]


def test_create_namespace_refuses_a_second_one_unless_exist_ok(online):
    with Hub() as hub:
        made = hub.create_namespace("vault", private=True)
        assert (made["name"], made["private"], made["owner"]) == ("vault", True, "admin")
        with pytest.raises(RegistryError) as info:
            hub.create_namespace("vault")
        assert (info.value.status, info.value.code) == (409, "NamespaceExists")
        assert "namespace 'vault' exists" in str(info.value)
        again = hub.create_namespace("vault", exist_ok=True)  # returned as it is: still private
        assert (again["name"], again["private"]) == ("vault", True)


def test_an_anonymous_hub_sends_no_token_even_with_one_in_the_environment(online):
    with Hub(anonymous=True) as hub:
        assert hub.token is None
        with pytest.raises(AuthenticationError, match="run `adapterhub login` or set ADAPTERHUB_TOKEN"):
            hub.whoami()
        with pytest.raises(AuthenticationError):
            hub.create_namespace("nobody")


def test_search_page_walks_the_cursor_without_repeats_and_iter_search_reads_them_all(online, tmp_path):
    with Hub(progress=False) as hub:
        hub.create_namespace("paged")
        for i in range(5):
            hub.push(make_adapter(tmp_path / str(i), seed=40 + i), f"paged/p{i}", version="1.0.0")
        first = hub.search_page(namespace="paged", limit=2)
        second = hub.search_page(namespace="paged", limit=2, cursor=first["next_cursor"])
        third = hub.search_page(namespace="paged", limit=2, cursor=second["next_cursor"])
        assert [len(p["items"]) for p in (first, second, third)] == [2, 2, 1]
        assert first["next_cursor"] and second["next_cursor"] and third["next_cursor"] is None
        seen = _names(first["items"] + second["items"] + third["items"])
        assert sorted(seen) == [f"paged/p{i}" for i in range(5)]
        assert _names(hub.iter_search(namespace="paged", page_size=2)) == seen
        assert _names(hub.iter_search("p3", namespace="paged")) == ["paged/p3"]


def test_search_page_names_an_unknown_filter(online):
    with Hub() as hub, pytest.raises(TypeError, match="unknown filter 'owner'; known: base_model, method"):
        hub.search_page(owner="acme")


def test_read_file_returns_the_bytes_of_the_version_the_reference_resolves_to(online, tmp_path):
    with Hub(progress=False) as hub:
        for version, text in (("1.0.0", "# one\n"), ("2.0.0", "# two\n")):
            folder = make_adapter(tmp_path / version, seed=50)
            (folder / "README.md").write_text(text)
            hub.push(folder, "acme/readable", version=version, alias="stable" if version == "1.0.0" else None)
        assert hub.read_file("acme/readable", "README.md") == b"# one\n"  # the stable alias
        assert hub.read_file("acme/readable@2.0.0", "README.md") == b"# two\n"
        assert hub.read_file("acme/readable@2.0.0", "adapter_config.json").startswith(b"{")
        with pytest.raises(AdapterNotFoundError, match="version 2.0.0 has no file 'NOTES.md'"):
            hub.read_file("acme/readable@2.0.0", "NOTES.md")
        with pytest.raises(InvalidAdapterError, match=r"refusing file path '../aliases': give a path inside"):
            hub.read_file("acme/readable@2.0.0", "../aliases")
        assert not hub.cache.repo_dir("acme", "readable").exists()  # nothing was pulled


def test_summary_and_audit_log_show_the_adapter_and_its_alias_moves_oldest_first(online, tmp_path):
    with Hub(progress=False) as hub:
        hub.push(make_adapter(tmp_path / "a", seed=60), "acme/audited", version="1.0.0", alias="stable")
        hub.push(make_adapter(tmp_path / "b", seed=61), "acme/audited", version="1.1.0")
        hub.set_alias("acme/audited", "stable", "1.1.0")
        summary = hub.summary("acme/audited:stable")
        assert (summary["name"], summary["latest_version"], summary["aliases"]) == (
            "audited", "1.1.0", {"stable": "1.1.0"})
        log = hub.audit_log("acme/audited")
        moves = [(e["action"], e["details"].get("version"), e["details"].get("previous"))
                 for e in log if e["action"] == "alias.set"]
        assert moves == [("alias.set", "1.0.0", None), ("alias.set", "1.1.0", "1.0.0")]
        assert [e["id"] for e in log] == sorted(e["id"] for e in log)
        assert {e["actor"] for e in log} == {"admin"}
        with pytest.raises(AdapterNotFoundError, match="did you mean acme/audited"):
            hub.audit_log("acme/audites")
