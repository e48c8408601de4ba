"""Blobs, yanks, search, namespaces and download counts (SECURITY_FINDINGS D3, D6, D11, D12, D18),
on SQLite and PostgreSQL: each reproduction refused (status, code, message) with nothing written,
or behaving as SECURITY.md and registry/API.md now say."""

from __future__ import annotations

import pytest

from tests.helpers.snapshots import assert_still, database_state
from tests.registry.factory import adapter_files, client, make_user, manifest, push, sha

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

SECRET = {**adapter_files(11), "adapterhub.json": b'{"method": "lora", "task": "secret"}'}  # nothing public shares a byte
SECRET_WEIGHTS = SECRET["adapter_model.safetensors"]


@pytest.fixture(scope="module")
def world(server):
    """alice owns private ``alice-private/secret@1.0.0`` and public ``alice/public-one@1.0.0``
    (``stable``); bob has a write token on ``bob`` and an adapter ``bob/stolen`` with no versions."""
    admin = client(server.url, server.admin_token)
    tokens = {"alice": make_user(admin, "alice"), "bob": make_user(admin, "bob")}
    assert admin.post("/api/v1/namespaces", json={"name": "alice-private", "private": True}).status_code == 201
    r = admin.post("/api/v1/tokens", json={"user": "alice", "scope": "write", "namespaces": ["alice", "alice-private"]})
    tokens["alice-all"] = r.json()["token"]
    alice = client(server.url, tokens["alice-all"])
    assert push(alice, "alice-private", "secret", "1.0.0", SECRET).status_code == 201
    assert push(alice, "alice", "public-one", "1.0.0", adapter_files(12), alias="stable").status_code == 201
    bob = client(server.url, tokens["bob"])
    assert bob.post("/api/v1/adapters", json={"namespace": "bob", "name": "stolen"}).status_code == 201
    return server, admin, tokens


def _as(world, who: str | None):
    server, admin, tokens = world
    return admin if who == "admin" else client(server.url, tokens[who] if who else None)


def _unchanged(world, send) -> object:
    server = world[0]
    before = database_state(server)
    r = send()
    assert_still(before, lambda: database_state(server))
    return r


# -- D3: a sha256 is not a key ------------------------------------------------------------------
def test_knowing_a_private_blobs_hash_does_not_let_you_publish_or_probe_it(world):
    bob, secret_sha = _as(world, "bob"), sha(SECRET_WEIGHTS)
    r = _unchanged(world, lambda: bob.post("/api/v1/blobs/missing", json={"sha256": [secret_sha]}))
    assert r.json() == {"missing": [secret_sha]}  # as for a blob nobody has
    for size in (1, len(SECRET_WEIGHTS)):
        body = {"version": "1.0.0", "files": [{"path": "w.safetensors", "sha256": secret_sha, "size": size}]}
        r = _unchanged(world, lambda b=body: bob.post("/api/v1/adapters/bob/stolen/versions", json=b))
        assert (r.status_code, r.json()["code"]) == (422, "BlobMissing"), r.text
        assert str(len(SECRET_WEIGHTS)) not in r.json()["detail"]
    anon = _as(world, None)
    assert anon.get("/api/v1/adapters/bob/stolen/versions/1.0.0/files/w.safetensors").status_code == 404


def test_uploading_the_bytes_is_the_proof_and_the_answer_does_not_say_they_were_stored(world):
    server = world[0]
    carol = client(server.url, make_user(world[1], "carol"))
    data = SECRET["adapter_config.json"]
    r = carol.put(f"/api/v1/blobs/{sha(data)}", content=data)
    assert r.status_code == 201, r.text  # new to carol: not "already present", though alice stored it
    assert carol.put(f"/api/v1/blobs/{sha(data)}", content=data).status_code == 200  # carol's own, again
    assert carol.post("/api/v1/blobs/missing", json={"sha256": [sha(data)]}).json() == {"missing": []}


def test_owners_and_readers_reuse_blobs_without_uploading_and_revocation_ends_it(world):
    server, admin, _tokens = world
    shas = [sha(b) for b in SECRET.values()]
    assert _as(world, "alice-all").post("/api/v1/blobs/missing", json={"sha256": shas}).json() == {"missing": []}
    # dave may read alice-private (a collaborator's token) and publishes without uploading
    dave_own = make_user(admin, "dave")
    r = admin.post("/api/v1/tokens", json={"user": "dave", "scope": "write", "namespaces": ["dave", "alice-private"]})
    collab, collab_id = r.json()["token"], r.json()["id"]
    c = client(server.url, collab)
    assert c.post("/api/v1/blobs/missing", json={"sha256": shas}).json() == {"missing": []}
    assert push(c, "alice-private", "secret", "1.0.1", SECRET, create=False).status_code == 201
    assert admin.delete(f"/api/v1/tokens/{collab_id}").status_code == 204
    # revoked: the hashes he saw are worth nothing to his own token
    dave = client(server.url, dave_own)
    assert dave.post("/api/v1/blobs/missing", json={"sha256": shas}).json() == {"missing": shas}
    assert dave.post("/api/v1/adapters", json={"namespace": "dave", "name": "copy"}).status_code == 201
    body = {"version": "1.0.0", "files": manifest(SECRET)}
    r = _unchanged(world, lambda: dave.post("/api/v1/adapters/dave/copy/versions", json=body))
    assert (r.status_code, r.json()["code"]) == (422, "BlobMissing"), r.text


# -- D6: PEP 592 yanks ---------------------------------------------------------------------------
def test_a_yanked_version_is_reached_only_by_an_exact_pin(world):
    alice, anon = _as(world, "alice"), _as(world, None)
    assert push(alice, "alice", "public-one", "1.1.0", adapter_files(13), alias="stable", create=False).status_code == 201
    r = alice.post("/api/v1/adapters/alice/public-one/versions/1.1.0/yank", json={"reason": "leak"})
    assert r.status_code == 200, r.text
    base = "/api/v1/adapters/alice/public-one/resolve"
    assert anon.get(base).json()["version"] == "1.0.0"
    assert anon.get(base, params={"ref": "@1.1.0"}).json()["version"] == "1.1.0"
    r = anon.get(base, params={"ref": ":stable"})
    assert (r.status_code, r.json()["code"]) == (404, "RevisionNotFound")
    assert "points at version 1.1.0, which is yanked (leak)" in r.json()["detail"]
    assert anon.get("/api/models/alice/public-one").json()["version"] == "1.0.0"
    assert anon.get("/api/models/alice/public-one/revision/main").json()["version"] == "1.0.0"
    assert anon.get("/api/models/alice/public-one/revision/stable").status_code == 404
    assert anon.get("/api/models/alice/public-one/revision/1.1.0").json()["version"] == "1.1.0"
    r = _unchanged(world, lambda: alice.put("/api/v1/adapters/alice/public-one/aliases/beta", json={"version": "1.1.0"}))
    assert (r.status_code, r.json()["code"]) == (409, "VersionYanked"), r.text
    assert alice.post("/api/v1/adapters/alice/public-one/versions/1.0.0/yank", json={"reason": "old"}).status_code == 200
    r = anon.get(base)
    assert (r.status_code, r.json()["detail"]) == (404, "every version of the adapter is yanked (pin one to use it)")
    for v in ("1.0.0", "1.1.0"):
        assert alice.post(f"/api/v1/adapters/alice/public-one/versions/{v}/unyank").status_code == 200
    assert anon.get(base, params={"ref": ":stable"}).json()["version"] == "1.1.0"


def test_a_yanked_arm_of_an_open_rollout_gets_no_traffic(world):
    """Found on the second attack: a yanked canary was still served through its rollout's alias."""
    alice, anon = _as(world, "alice"), _as(world, None)
    base = "/api/v1/adapters/alice/rolled"
    for v in ("1.0.0", "1.1.0"):
        assert push(alice, "alice", "rolled", v, adapter_files(20 + int(v[2])), alias="prod" if v == "1.0.0" else None,
                    create=v == "1.0.0").status_code == 201
    r = alice.post(f"{base}/rollouts", json={"alias": "prod", "canary_version": "1.1.0", "weight": 100})
    assert r.status_code == 201, r.text
    keys = [f"tenant-{i}" for i in range(20)]
    arms = lambda: {anon.get(f"{base}/resolve", params={"ref": ":prod", "key": k}).json()["version"] for k in keys}  # noqa: E731
    assert arms() == {"1.1.0"}
    assert alice.post(f"{base}/versions/1.1.0/yank", json={"reason": "bad"}).status_code == 200
    assert arms() == {"1.0.0"}
    assert alice.post(f"{base}/versions/1.0.0/yank", json={"reason": "also bad"}).status_code == 200
    r = anon.get(f"{base}/resolve", params={"ref": ":prod", "key": "tenant-1"})
    assert (r.status_code, r.json()["code"]) == (404, "RevisionNotFound"), r.text


# -- D11: search bounded before the database -----------------------------------------------------
@pytest.mark.parametrize("words", [33, 1200])
def test_a_search_with_too_many_words_is_a_422_not_an_outage(world, words):
    anon = _as(world, None)
    r = anon.get("/api/v1/adapters", params={"q": " ".join(["a"] * words)})
    assert (r.status_code, r.json()["code"]) == (422, "InvalidRequest"), r.text
    assert "at most 32 words and 512 characters" in r.json()["detail"] and "retry-after" not in r.headers
    assert anon.get("/api/v1/adapters", params={"q": "x" * 513}).status_code == 422
    assert anon.get("/api/v1/adapters", params={"q": " ".join(["a"] * 32)}).status_code == 200


@pytest.mark.parametrize("key", ["tag", "base_model", "method", "task", "namespace"])
def test_an_overlong_search_filter_is_a_422(world, key):
    """Found on the second attack: a 60,000-character tag made SQLite refuse the LIKE (a 503)."""
    r = _as(world, None).get("/api/v1/adapters", params={key: "x" * 513})
    assert (r.status_code, r.json()["code"]) == (422, "InvalidRequest"), r.text
    assert r.json()["detail"] == f"filter {key} is 513 characters; at most 512"


def test_blobs_missing_asks_about_one_versions_files_at_most(world):
    shas = [sha(str(i).encode()) for i in range(1001)]
    r = _as(world, "bob").post("/api/v1/blobs/missing", json={"sha256": shas})
    assert (r.status_code, r.json()["code"]) == (422, "InvalidRequest"), r.text
    assert "at most 1000" in r.json()["detail"]


# -- D12: namespaces ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["admin", "api"])
def test_reserved_namespaces_cannot_be_claimed(world, name):
    r = _unchanged(world, lambda: _as(world, "bob").post("/api/v1/namespaces", json={"name": name}))
    assert (r.status_code, r.json()["code"]) == (403, "Forbidden")
    assert r.json()["detail"] == f"namespace {name!r} is reserved for the registry's own use"


def test_a_taken_name_reads_the_same_private_or_public(world):
    bob = _as(world, "bob")
    private = _unchanged(world, lambda: bob.post("/api/v1/namespaces", json={"name": "alice-private"}))
    public = _unchanged(world, lambda: bob.post("/api/v1/namespaces", json={"name": "alice"}))
    assert (private.status_code, private.json()["code"]) == (public.status_code, public.json()["code"]) == (
        409, "NamespaceExists")
    assert private.json()["detail"].replace("alice-private", "N") == public.json()["detail"].replace("alice", "N")


# -- D18: downloads count whole GETs only -------------------------------------------------------
def test_range_and_head_requests_do_not_count_as_downloads(world):
    anon, url = _as(world, None), "/api/v1/adapters/alice/public-one"
    before = anon.get(url).json()["downloads"]
    path = f"{url}/versions/1.0.0/files/adapter_config.json"
    for _ in range(5):
        assert anon.get(path, headers={"Range": "bytes=0-0"}).status_code == 206
        assert anon.head(path).status_code == 200
    assert anon.get(url).json()["downloads"] == before
    assert anon.get(path).status_code == 200
    assert anon.get(url).json()["downloads"] == before + 1
