"""`Hub.pull` against a hostile registry (a real http.server on 127.0.0.1): every name, version and
file path the server answers is re-checked before it becomes a cache path, the refusal names what
the server said and what was expected, and nothing outside the cache folder is created or deleted
(audit finding D2). The second half drives `Cache` itself, the line behind the client's checks."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from adapterhub.errors import InvalidAdapterError, InvalidReferenceError, RegistryError
from adapterhub.registry.cache import Cache, safe_relpath
from adapterhub.registry.client import Hub

COMMIT = "0" * 40
CONFIG = b'{"peft_type": "LORA"}'
GOOD_FILE = {"path": "adapter_config.json", "sha256": hashlib.sha256(CONFIG).hexdigest(), "size": len(CONFIG)}


class _Hostile(http.server.BaseHTTPRequestHandler):
    """Answers resolve requests with ``server.resolve`` and every other request but a file's with
    ``server.manifest``; serves ``server.files`` by path; logs every path in ``server.seen``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        path = urlsplit(self.path).path
        srv.seen.append(self.path)
        if "/files/" in path:
            data = srv.files.get(unquote(path.split("/files/", 1)[1]))
            self._send(200 if data is not None else 404, data if data is not None else b'{"detail": "no file"}')
        elif path.endswith("/resolve"):
            self._send(200, json.dumps(srv.resolve).encode())
        else:  # as the audit's server did: a "versions/.." URL, normalised by the client, still gets it
            self._send(200, json.dumps(srv.manifest).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def hostile(resolve: dict, manifest: dict, files: dict[str, bytes] | None = None) -> Iterator:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    srv.resolve, srv.manifest, srv.files, srv.seen = resolve, manifest, files or {}, []
    srv.daemon_threads = True
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def tree(root: Path) -> list[tuple[str, bytes | None]]:
    """Every path below ``root`` (folders too), with the bytes of files: what a test must find unchanged."""
    return sorted((p.relative_to(root).as_posix(), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


@pytest.fixture
def world(tmp_path) -> tuple[Path, Path]:
    """``rt/evilcache`` (the cache) beside ``rt/victim/keep.txt`` and ``rt/cachesibling/keep.txt``."""
    rt = tmp_path / "rt"
    for folder in ("victim", "evilcache-sibling", "cachesibling"):
        (rt / folder).mkdir(parents=True)
        (rt / folder / "keep.txt").write_text("keep me\n")
    return rt, rt / "evilcache"


def resolve_answer(**changes) -> dict:
    return {"namespace": "a", "name": "b", "version": "1.0.0", "commit": COMMIT, **changes}


def manifest_answer(**changes) -> dict:
    return {"version": "1.0.0", "commit": COMMIT, "files": [GOOD_FILE], "yanked": False, **changes}


def pull_refused(world, ref: str, resolve: dict, manifest: dict, error: type[Exception], message: str) -> list[str]:
    """Pull ``ref`` from a registry giving these answers; assert the refusal, that the tree outside
    the cache is untouched and that no snapshot was built. Returns the paths the client asked for."""
    rt, cache = world
    outside = [(p, c) for p, c in tree(rt) if not p.startswith("evilcache/") and p != "evilcache"]
    with hostile(resolve, manifest, {GOOD_FILE["path"]: CONFIG}) as srv:
        with Hub(srv.url, cache_dir=cache, anonymous=True, progress=False) as hub, pytest.raises(error) as info:
            hub.pull(ref)
    assert str(info.value) == message
    assert [(p, c) for p, c in tree(rt) if not p.startswith("evilcache/") and p != "evilcache"] == outside
    assert not any("/snapshots/" in p for p, _ in tree(rt)), tree(rt)
    assert (rt / "victim" / "keep.txt").read_text() == "keep me\n"
    return srv.seen


def untrusted(ref: str, what: str, said: object, expected: str) -> str:
    return (f"refusing the registry's answer for {ref}: it names {what} {said!r}, expected {expected} "
            "(a broken or hostile registry, or something on the network path)")


def test_an_honest_answer_from_the_same_server_pulls(world):
    """The control: the test server itself works, so each refusal below is the check's doing."""
    _rt, cache = world
    with hostile(resolve_answer(), manifest_answer(), {GOOD_FILE["path"]: CONFIG}) as srv:
        with Hub(srv.url, cache_dir=cache, anonymous=True, progress=False) as hub:
            folder = hub.pull("a/b")
    assert folder == cache / "adapters--a--b" / "snapshots" / "1.0.0"
    assert (folder / "adapter_config.json").read_bytes() == CONFIG


def test_the_audit_reproduction_traversal_name_and_version_deletes_nothing(world):
    seen = pull_refused(world, "a/b", {"namespace": "a", "name": "b/../../victim", "version": "..", "commit": COMMIT},
                        {"version": "..", "commit": COMMIT, "files": [], "yanked": False}, RegistryError,
                        untrusted("a/b", "adapter name", "b/../../victim", "'b'"))
    assert [urlsplit(p).path for p in seen] == ["/api/v1/adapters/a/b/resolve"]  # nothing fetched after


@pytest.mark.parametrize(("answer", "what", "said", "expected"), [
    ({"namespace": "../victim"}, "namespace", "../victim", "'a'"),
    ({"namespace": "other"}, "namespace", "other", "'a'"),
    ({"name": "thing"}, "adapter name", "thing", "'b'"),
    ({"name": "B"}, "adapter name", "B", "'b'"),
    ({"version": ".."}, "version", "..", "a semantic version"),
    ({"version": "1.0.0/../../../victim"}, "version", "1.0.0/../../../victim", "a semantic version"),
    ({"version": None}, "version", None, "a semantic version"),
    ({"commit": "../x"}, "commit", "../x", "40 lowercase hex digits"),
], ids=["traversal namespace", "other namespace", "other name", "upper-case name", "dot-dot version",
        "version with a path", "no version", "bad commit"])
def test_a_resolve_answer_naming_anything_else_is_refused(world, answer, what, said, expected):
    pull_refused(world, "a/b", resolve_answer(**answer), manifest_answer(), RegistryError,
                 untrusted("a/b", what, said, expected))


def test_a_pinned_resolve_must_answer_the_pinned_version(world):
    _rt, cache = world
    with hostile(resolve_answer(version="2.0.0"), manifest_answer()) as srv, \
            Hub(srv.url, cache_dir=cache, anonymous=True) as hub, pytest.raises(RegistryError) as info:
        hub.resolve("a/b@1.0.0")
    assert str(info.value) == untrusted("a/b@1.0.0", "version", "2.0.0", "'1.0.0'")
    assert info.value.code == "UntrustedAnswer"


@pytest.mark.parametrize(("ref", "manifest", "what", "said", "expected"), [
    ("a/b", manifest_answer(version="2.0.0"), "manifest version", "2.0.0", "'1.0.0'"),
    ("a/b", manifest_answer(version=".."), "manifest version", "..", "'1.0.0'"),
    ("a/b@1.0.0", manifest_answer(version="../../victim"), "manifest version", "../../victim", "'1.0.0'"),
    ("a/b@1.0.0", manifest_answer(version="1.0.1"), "manifest version", "1.0.1", "'1.0.0'"),
    ("a/b", manifest_answer(commit="1" * 40), "manifest commit", "1" * 40, f"{COMMIT!r} (the resolved commit)"),
], ids=["other version", "dot-dot version", "pinned traversal", "pinned other version", "other commit"])
def test_a_manifest_for_another_version_is_refused(world, ref, manifest, what, said, expected):
    seen = pull_refused(world, ref, resolve_answer(), manifest, RegistryError, untrusted(ref, what, said, expected))
    assert not any("/files/" in p for p in seen)


@pytest.mark.parametrize("path", ["D:/evil", "C:x", "a:b", "..", "../victim/keep.txt", "a/.. ", "a/...", "x\x00y",
                                  "x\ny", "x\x85y", "/etc/passwd", "a\\..\\b"])
def test_manifest_file_paths_that_escape_on_any_os_are_refused_before_a_byte_is_fetched(world, path):
    entry = {**GOOD_FILE, "path": path}
    seen = pull_refused(world, "a/b", resolve_answer(), manifest_answer(files=[entry]), InvalidAdapterError,
                        f"refusing unsafe file path {path!r} in the registry's manifest")
    assert not any("/files/" in p for p in seen)


@pytest.mark.parametrize(("files", "message"), [
    ([{**GOOD_FILE, "sha256": "../../victim"}], "refusing malformed sha256 '../../victim' in the registry's manifest"),
    ([{**GOOD_FILE, "size": -1}], untrusted("a/b", "size of 'adapter_config.json'", -1,
                                            "a whole number of bytes, 0 or more")),
    ([GOOD_FILE, GOOD_FILE], "refusing the registry's manifest for a/b: 'adapter_config.json' is listed twice"),
    ([{**GOOD_FILE, "path": "x"}, {**GOOD_FILE, "path": "x/y"}],
     "refusing the registry's manifest for a/b: 'x' is a file and also the folder of 'x/y'"),
], ids=["traversal sha256", "negative size", "duplicate path", "file and folder"])
def test_malformed_file_entries_are_typed_refusals(world, files, message):
    error = RegistryError if message.startswith("refusing the registry's answer") else InvalidAdapterError
    pull_refused(world, "a/b", resolve_answer(), manifest_answer(files=files), error, message)


def test_read_file_refuses_a_resolved_version_that_would_change_the_url(world):
    _rt, cache = world
    with hostile(resolve_answer(version="../../../blobs"), manifest_answer()) as srv, \
            Hub(srv.url, cache_dir=cache, anonymous=True) as hub, pytest.raises(RegistryError, match="version"):
        hub.read_file("a/b", "README.md")
    assert [urlsplit(p).path for p in srv.seen] == ["/api/v1/adapters/a/b/resolve"]


# -- the cache's own line: every path is proven to lie under the root -------------------------
@pytest.mark.parametrize("path", ["D:/evil", "C:x", "a:b", "x\x7fy", " ", ". ."])
def test_safe_relpath_refuses_drive_letters_colons_controls_and_dot_space_segments(path):
    with pytest.raises(InvalidAdapterError, match="unsafe file path"):
        safe_relpath(path)


def test_safe_relpath_keeps_ordinary_names():
    assert str(safe_relpath("sub/a.b-c_d.safetensors")) == "sub/a.b-c_d.safetensors"
    assert str(safe_relpath(".hidden/x")) == ".hidden/x"


def test_cache_refuses_traversal_names_and_versions_before_touching_the_disk(world):
    rt, root = world
    before = tree(rt)
    cache = Cache(root)
    with pytest.raises(InvalidReferenceError):
        cache.repo_dir("a", "b/../../victim")
    with pytest.raises(InvalidReferenceError):
        cache.build_snapshot("a", "b", {"version": "..", "files": []})
    with pytest.raises(InvalidReferenceError):
        cache.write_ref("a", "b", "../../victim/keep.txt", "1.0.0")
    with pytest.raises(InvalidReferenceError):
        cache.write_ref("a", "b", "default", "../x")
    assert tree(rt) == before


def test_cache_refuses_a_repo_folder_that_links_outside_the_root(world):
    rt, root = world
    root.mkdir()
    os.symlink(rt / "victim", root / "adapters--a--b")  # planted by someone else, not by the cache
    cache = Cache(root)
    before = tree(rt / "victim")
    with pytest.raises(InvalidAdapterError, match="outside the cache"):
        cache.build_snapshot("a", "b", {"version": "1.0.0", "commit": COMMIT, "files": []})
    with pytest.raises(InvalidAdapterError, match="outside the cache"):
        cache.lock("a", "b")
    assert cache.prune() == {"snapshots": [], "blobs": 0, "freed": 0}  # a linked repo is not the cache's
    assert tree(rt / "victim") == before


def test_prune_refuses_a_snapshot_that_links_outside_the_root(world):
    rt, root = world
    snaps = root / "adapters--a--b" / "snapshots"
    snaps.mkdir(parents=True)
    os.symlink(rt / "victim", snaps / "1.0.0")
    with pytest.raises(InvalidAdapterError, match="outside the cache"):
        Cache(root).prune()
    assert (rt / "victim" / "keep.txt").read_text() == "keep me\n"
