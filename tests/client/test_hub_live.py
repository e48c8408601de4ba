"""`Hub` in-process against a real registry: round trips, offline resolution, privacy, edge cases."""

from __future__ import annotations

import httpx
import pytest

from adapterhub.errors import AdapterNotFoundError, OfflineError
from adapterhub.registry.client import Hub, Resolution
from tests.client.support import folder_bytes, make_adapter


def test_nested_folders_round_trip_byte_for_byte(online, tmp_path):
    folder = make_adapter(tmp_path / "a", seed=20)
    (folder / "extras" / "deep").mkdir(parents=True)
    (folder / "extras" / "deep" / "labels.json").write_text('["neg", "pos"]')
    (folder / "README.md").write_text("# card\n")
    with Hub(progress=False) as hub:
        out = hub.push(folder, "acme/nested@1.0.0")
        assert "extras/deep/labels.json" in {f["path"] for f in out["files"]}
        pulled = hub.pull("acme/nested@1.0.0")
    assert folder_bytes(pulled) == folder_bytes(folder)
    assert (hub.cache.repo_dir("acme", "nested") / "refs" / "@1.0.0").read_text() == "1.0.0"


def test_resolve_offline_answers_from_the_refs(online, tmp_path):
    with Hub(progress=False) as hub:
        hub.push(make_adapter(tmp_path / "a", seed=21), "acme/resolvable", version="2.0.0", alias="stable")
        online_res = hub.resolve("acme/resolvable:stable")
        hub.pull("acme/resolvable:stable")
    with Hub(offline=True) as hub:
        assert hub.resolve("acme/resolvable:stable") == Resolution("acme", "resolvable", "2.0.0", online_res.commit)
        with pytest.raises(OfflineError, match="acme/resolvable:canary is not in the local cache"):
            hub.resolve("acme/resolvable:canary")


def test_show_of_an_adapter_without_versions(online):
    headers = {"Authorization": f"Bearer {online.admin_token}"}
    r = httpx.post(f"{online.url}/api/v1/adapters", json={"namespace": "acme", "name": "empty"}, headers=headers)
    assert r.status_code == 201, r.text
    with Hub() as hub:
        shown = hub.show("acme/empty")
        assert shown["name"] == "empty" and shown["version"] is None
        assert hub.versions("acme/empty") == []
        with pytest.raises(AdapterNotFoundError):
            hub.pull("acme/empty")


def test_private_adapters_are_not_found_and_not_suggested_without_a_token(online, tmp_path, monkeypatch):
    headers = {"Authorization": f"Bearer {online.admin_token}"}
    r = httpx.post(f"{online.url}/api/v1/namespaces", json={"name": "secret", "private": True}, headers=headers)
    assert r.status_code == 201, r.text
    with Hub(progress=False) as hub:
        hub.push(make_adapter(tmp_path / "a", seed=22), "secret/plans", version="1.0.0")
    monkeypatch.delenv("ADAPTERHUB_TOKEN")
    with Hub() as anonymous:
        with pytest.raises(AdapterNotFoundError) as info:
            anonymous.pull("secret/plans")
        assert "did you mean" not in str(info.value)
        with pytest.raises(AdapterNotFoundError) as info:
            anonymous.pull("secret/plan")
        assert "secret/plans" not in str(info.value)
        assert "secret/plans" not in {f"{a['namespace']}/{a['name']}" for a in anonymous.search(limit=200)}


def test_concurrent_pushes_of_a_new_adapter_create_it_once(online, tmp_path):
    import threading

    errors = []

    def push(version: str, seed: int) -> None:
        try:
            with Hub(progress=False) as hub:
                hub.push(make_adapter(tmp_path / version, seed=seed), "acme/racy", version=version)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(v, s)) for v, s in (("1.0.0", 30), ("1.0.1", 31))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Hub() as hub:
        assert sorted(v["version"] for v in hub.versions("acme/racy")) == ["1.0.0", "1.0.1"]
