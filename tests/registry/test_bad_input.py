"""Every refusal: the exact status, code and message, and proof that nothing changed."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlparse

import pytest

from tests.registry.conftest import MAX_UPLOAD
from tests.registry.factory import adapter_files, manifest, raw_safetensors, safetensors_bytes, sha, upload


@pytest.fixture
def empty_adapter(user):
    ns, c = user
    assert c.post("/api/v1/adapters", json={"namespace": ns, "name": "target"}).status_code == 201
    return ns, c


def assert_unchanged(c, ns):
    assert c.get(f"/api/v1/adapters/{ns}/target/versions").json() == []
    assert c.get(f"/api/v1/adapters/{ns}/target").json()["latest_version"] is None
    assert [e["action"] for e in c.get(f"/api/v1/adapters/{ns}/target/audit").json()] == ["adapter.create"]


def publish(c, ns, files: dict[str, bytes], version="1.0.0", entries=None):
    upload(c, files)
    return c.post(f"/api/v1/adapters/{ns}/target/versions",
                  json={"version": version, "files": entries or manifest(files)})


def assert_error(r, status, code, detail):
    assert (r.status_code, r.json()) == (status, {"code": code, "detail": detail})
    assert r.headers["x-error-code"] == code


def test_blob_hash_mismatch_is_refused(empty_adapter):
    ns, c = empty_adapter
    wrong = sha(b"something else")
    r = c.put(f"/api/v1/blobs/{wrong}", content=b"payload")
    assert_error(r, 422, "HashMismatch", f"body hashes to {sha(b'payload')}, not {wrong}")
    assert c.post("/api/v1/blobs/missing", json={"sha256": [wrong, sha(b"payload")]}).json()["missing"] == [
        wrong, sha(b"payload")]


def test_blob_bad_digest_is_refused(empty_adapter):
    _ns, c = empty_adapter
    r = c.put("/api/v1/blobs/ABC", content=b"x")
    assert_error(r, 422, "InvalidManifest", "bad sha256 'ABC': expected 64 lowercase hex digits")


def test_blob_over_limit_is_413(empty_adapter):
    _ns, c = empty_adapter
    big = b"\0" * (MAX_UPLOAD + 1)
    r = c.put(f"/api/v1/blobs/{sha(big)}", content=big)
    assert_error(r, 413, "TooLarge", f"blob of {MAX_UPLOAD + 1} bytes exceeds the limit of {MAX_UPLOAD}")
    assert c.post("/api/v1/blobs/missing", json={"sha256": [sha(big)]}).json()["missing"] == [sha(big)]


def test_truncated_upload_stores_nothing(server, empty_adapter):
    _ns, c = empty_adapter
    data = b"t" * 5000
    u = urlparse(server.url)
    token = c.headers["authorization"]
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall((f"PUT /api/v1/blobs/{sha(data)} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
                   f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:1000])
    assert c.post("/api/v1/blobs/missing", json={"sha256": [sha(data)]}).json()["missing"] == [sha(data)]
    tmp_dir = server.home / "blobs" / "tmp"
    deadline = time.monotonic() + 10
    while list(tmp_dir.glob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_dir.glob("*.part")) == []  # the partial upload was discarded, not left behind


def test_size_mismatch_is_refused(empty_adapter):
    ns, c = empty_adapter
    files = adapter_files(1)
    entries = manifest(files)
    entries[1]["size"] += 1
    r = publish(c, ns, files, entries=entries)
    real = len(files["adapter_model.safetensors"])
    assert_error(r, 422, "SizeMismatch",
                 f"adapter_model.safetensors: declared {real + 1} bytes, the uploaded blob has {real}")
    assert_unchanged(c, ns)


def test_missing_blob_is_refused(empty_adapter):
    ns, c = empty_adapter
    entries = manifest(adapter_files(2)) + [{"path": "extra.json", "sha256": "0" * 64, "size": 3}]
    upload(c, adapter_files(2))
    r = c.post(f"/api/v1/adapters/{ns}/target/versions", json={"version": "1.0.0", "files": entries})
    assert_error(r, 422, "BlobMissing", "upload these files first (their blobs are missing): extra.json")
    assert_unchanged(c, ns)


@pytest.mark.parametrize("path", ["adapter_model.bin", "model.PT", "w.pth", "x.pkl", "last.ckpt"])
def test_pickle_weights_are_refused_unread(empty_adapter, path):
    ns, c = empty_adapter
    files = {"adapter_config.json": b"{}", path: b"\x80\x04K\x01."}
    r = publish(c, ns, files)
    assert r.status_code == 422 and r.json()["code"] == "PickleRefused"
    assert r.json()["detail"].startswith(f"refused {path!r}: pickle-based weights")
    assert_unchanged(c, ns)


BAD_SAFETENSORS = {
    "huge header length": (raw_safetensors(b"{}", length=10**12),
                           "header length 1000000000000 exceeds the limit or the file size (10 bytes)"),
    "not json": (raw_safetensors(b"{not json"), "header is not valid JSON: "),
    "offsets outside": (raw_safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),
                        "tensor 'w' offsets [0, 8] lie outside the data (4 bytes)"),
    "overlap": (raw_safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
                "tensors 'a' and 'b' overlap"),
    "too short": (b"\x01\x02", "2 bytes is too short for a safetensors file"),
}


@pytest.mark.parametrize("case", list(BAD_SAFETENSORS))
def test_bad_safetensors_header_is_refused(empty_adapter, case):
    ns, c = empty_adapter
    blob, message = BAD_SAFETENSORS[case]
    r = publish(c, ns, {"adapter_config.json": b"{}", "adapter_model.safetensors": blob})
    assert r.status_code == 422 and r.json()["code"] == "BadSafetensors", r.text
    assert r.json()["detail"].startswith("adapter_model.safetensors: " + message)
    assert_unchanged(c, ns)


@pytest.mark.parametrize("path,reason", [
    ("../evil.json", "'..' segments are not allowed"),
    ("a/../../evil.json", "'..' segments are not allowed"),
    ("/etc/passwd", "must be relative, with '/' separators"),
    ("dir\\file.json", "must be relative, with '/' separators"),
    ("bad\x00name.json", "control characters are not allowed"),
    ("a//b.json", "empty or '.' segments are not allowed"),
])
def test_bad_paths_are_refused(empty_adapter, path, reason):
    ns, c = empty_adapter
    files = adapter_files(3)
    entries = manifest(files) + [{"path": path, "sha256": sha(files["adapterhub.json"]), "size": 0}]
    upload(c, files)
    r = c.post(f"/api/v1/adapters/{ns}/target/versions", json={"version": "1.0.0", "files": entries})
    assert_error(r, 422, "BadPath", f"bad path {path!r}: {reason}")
    assert_unchanged(c, ns)


def test_invalid_adapter_config_is_refused(empty_adapter):
    ns, c = empty_adapter
    r = publish(c, ns, {"adapter_config.json": b"[1, 2]", "adapter_model.safetensors": safetensors_bytes()})
    assert_error(r, 422, "InvalidManifest", "adapter_config.json must hold a JSON object, found list")
    assert_unchanged(c, ns)


def test_bad_version_string_is_refused(empty_adapter):
    ns, c = empty_adapter
    r = publish(c, ns, adapter_files(4), version="1.0")
    assert_error(r, 422, "InvalidName", "invalid version '1.0': expected a semantic version such as 1.2.0")
    assert_unchanged(c, ns)


@pytest.mark.parametrize("name", ["Upper", "-dash", "a/b", "x" * 97, "dot..dot", "ünï"])
def test_bad_adapter_names_are_refused(empty_adapter, name):
    ns, c = empty_adapter
    r = c.post("/api/v1/adapters", json={"namespace": ns, "name": name})
    assert_error(r, 422, "InvalidName",
                 f"invalid adapter name {name!r}: use 1-96 characters from [a-z0-9._-], starting with a letter or digit")
    names = [a["name"] for a in c.get("/api/v1/adapters", params={"namespace": ns}).json()["items"]]
    assert names == ["target"]


def test_bad_alias_name_is_refused(empty_adapter):
    ns, c = empty_adapter
    publish(c, ns, adapter_files(5))
    r = c.put(f"/api/v1/adapters/{ns}/target/aliases/Stable", json={"version": "1.0.0"})
    assert_error(r, 422, "InvalidName",
                 "invalid alias 'Stable': use 1-64 characters from [a-z0-9._-] (no '/'), starting with a letter or digit")
    assert c.get(f"/api/v1/adapters/{ns}/target/aliases").json() == {}


def test_duplicate_adapter_is_409(empty_adapter):
    ns, c = empty_adapter
    r = c.post("/api/v1/adapters", json={"namespace": ns, "name": "target", "description": "again"})
    assert_error(r, 409, "AdapterExists", f"adapter {ns}/target exists")
    assert c.get(f"/api/v1/adapters/{ns}/target").json()["description"] == ""


def test_malformed_body_is_422(empty_adapter):
    ns, c = empty_adapter
    r = c.post(f"/api/v1/adapters/{ns}/target/versions", content=json.dumps({"files": []}),
               headers={"content-type": "application/json"})
    assert_error(r, 422, "InvalidRequest", "invalid request: version: Field required")
    assert_unchanged(c, ns)


def test_unknown_adapter_is_404(anon):
    r = anon.get("/api/v1/adapters/nobody/nothing")
    assert_error(r, 404, "RepoNotFound", "adapter nobody/nothing not found (or you may not read it)")
