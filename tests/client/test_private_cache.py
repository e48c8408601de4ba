"""A shared cache never stands in for authorization (audit finding D5): against a real registry,
alice pulls her private version into a cache; an anonymous Hub and bob's Hub on the same cache
folder get the very not-found a missing adapter gets, and the cache stays as it was. Alice's own
pinned pulls still take the bytes from the cache, and offline mode stays cache-only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapterhub.errors import AdapterNotFoundError
from adapterhub.registry.client import Hub
from tests.client.support import folder_bytes, make_adapter
from tests.registry.factory import client, make_user

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

PINNED = "alice-private/secret@1.0.0"


def tree(root: Path) -> list[tuple[str, bytes | None]]:
    return sorted((p.relative_to(root).as_posix(), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def people(server, tmp_path_factory) -> dict[str, str]:
    """Users alice (with a private namespace holding secret@1.0.0) and bob: a token each."""
    with client(server.url, server.admin_token) as admin:
        alice, bob = make_user(admin, "alice"), make_user(admin, "bob")
        with Hub(server.url, alice) as hub:
            hub.create_namespace("alice-private", private=True)
        r = admin.post("/api/v1/tokens", json={"user": "alice", "scope": "write",
                                               "namespaces": ["alice", "alice-private"]})
        assert r.status_code == 201, r.text
        alice = r.json()["token"]
    folder = make_adapter(tmp_path_factory.mktemp("secret") / "a", seed=40)
    with Hub(server.url, alice, cache_dir=tmp_path_factory.mktemp("push-cache"), progress=False) as hub:
        hub.push(folder, PINNED, alias="stable")
    return {"alice": alice, "bob": bob}


def not_found(hub: Hub, ref: str) -> AdapterNotFoundError:
    with pytest.raises(AdapterNotFoundError) as info:
        hub.pull(ref)
    return info.value


@pytest.mark.parametrize("who", ["anonymous", "bob"])
def test_a_private_version_in_a_shared_cache_is_not_found_for_others(server, people, tmp_path, who):
    cache = tmp_path / "shared-cache"
    with Hub(server.url, people["alice"], cache_dir=cache, progress=False) as alice:
        folder = alice.pull(PINNED)
    before = tree(cache)
    other = Hub(server.url, people.get(who), cache_dir=cache, anonymous=who == "anonymous", progress=False)
    with other:
        refused = not_found(other, PINNED)
        missing = not_found(other, "alice-private/nothing@1.0.0")
        assert not_found(other, "alice-private/secret").status == 404  # unpinned was already checked
    assert (refused.status, refused.code) == (missing.status, missing.code) == (404, missing.code)
    assert str(refused).replace("secret", "nothing") == str(missing)
    assert refused.reference == PINNED
    assert tree(cache) == before  # no ref written, nothing removed
    assert folder_bytes(folder)  # alice's snapshot is intact


def test_the_owner_still_pulls_from_the_cache_and_offline_stays_cache_only(server, people, tmp_path):
    cache = tmp_path / "cache"
    with Hub(server.url, people["alice"], cache_dir=cache, progress=False) as alice:
        first = alice.pull(PINNED)
        downloads = alice.show("alice-private/secret")["downloads"]
        assert alice.pull(PINNED) == first  # authorised by the manifest, bytes from the cache
        assert alice.show("alice-private/secret")["downloads"] == downloads
    with Hub("http://127.0.0.1:9", cache_dir=cache, offline=True, anonymous=True) as offline:
        assert offline.pull(PINNED) == first  # documented: offline answers from the cache alone


def test_a_cached_manifest_that_disagrees_with_the_registry_is_pulled_again(server, people, tmp_path):
    cache = tmp_path / "cache"
    with Hub(server.url, people["alice"], cache_dir=cache, progress=False) as alice:
        folder = alice.pull(PINNED)
        good = folder_bytes(folder)
        path = alice.cache.manifest_path("alice-private", "secret", "1.0.0")
        cached = json.loads(path.read_text())
        cached["commit"] = "f" * 40  # as if another registry, or a tampering hand, had written it
        path.write_text(json.dumps(cached))
        (folder / "adapter_config.json").chmod(0o644)
        (folder / "adapter_config.json").write_text("{}")
        assert alice.pull(PINNED) == folder
        assert folder_bytes(folder) == good
        assert alice.cache.manifest("alice-private", "secret", "1.0.0")["commit"] != "f" * 40
