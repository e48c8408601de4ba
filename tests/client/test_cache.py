"""The cache on its own: layout, verified and resumable downloads, locks, offline, prune."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from adapterhub.errors import InvalidAdapterError, OfflineError, RegistryError
from adapterhub.registry.cache import Cache, download_blob, ref_name, safe_relpath
from adapterhub.registry.reference import parse_reference
from tests.client.support import range_server, sha256

DATA = os.urandom(300_000)


def test_download_blob_fetches_verifies_and_renames(tmp_path):
    dest = tmp_path / sha256(DATA)
    with range_server({"/f": DATA}) as srv, httpx.Client(base_url=srv.url) as http:
        download_blob(http, "/f", dest, sha256(DATA), len(DATA))
    assert dest.read_bytes() == DATA
    assert not dest.with_name(dest.name + ".incomplete").exists()
    assert oct(dest.stat().st_mode & 0o777) == "0o444"
    assert srv.requests == [("/f", None)]


def test_download_blob_resumes_partial_file_with_range(tmp_path):
    dest = tmp_path / sha256(DATA)
    dest.with_name(dest.name + ".incomplete").write_bytes(DATA[:120_000])
    seen = []
    with range_server({"/f": DATA}) as srv, httpx.Client(base_url=srv.url) as http:
        download_blob(http, "/f", dest, sha256(DATA), len(DATA), on_bytes=seen.append)
    assert dest.read_bytes() == DATA
    assert srv.requests == [("/f", "bytes=120000-")]
    assert sum(seen) == len(DATA)


def test_interrupted_download_keeps_prefix_and_resumes(tmp_path):
    dest = tmp_path / sha256(DATA)
    with range_server({"/f": DATA}, cut_after=100_000) as srv, httpx.Client(base_url=srv.url) as http:
        with pytest.raises(httpx.TransportError):
            download_blob(http, "/f", dest, sha256(DATA), len(DATA))
    partial = dest.with_name(dest.name + ".incomplete")
    assert partial.read_bytes() == DATA[: partial.stat().st_size] and partial.stat().st_size > 0
    kept = partial.stat().st_size
    with range_server({"/f": DATA}) as srv, httpx.Client(base_url=srv.url) as http:
        download_blob(http, "/f", dest, sha256(DATA), len(DATA))
    assert srv.requests == [("/f", f"bytes={kept}-")]
    assert dest.read_bytes() == DATA


def test_download_restarts_when_server_ignores_range(tmp_path):
    dest = tmp_path / sha256(DATA)
    dest.with_name(dest.name + ".incomplete").write_bytes(DATA[:5000])
    with range_server({"/f": DATA}, honour_range=False) as srv, httpx.Client(base_url=srv.url) as http:
        download_blob(http, "/f", dest, sha256(DATA), len(DATA))
    assert dest.read_bytes() == DATA


def test_download_starts_over_when_kept_prefix_is_corrupt(tmp_path):
    dest = tmp_path / sha256(DATA)
    dest.with_name(dest.name + ".incomplete").write_bytes(b"x" * 5000)
    with range_server({"/f": DATA}) as srv, httpx.Client(base_url=srv.url) as http:
        download_blob(http, "/f", dest, sha256(DATA), len(DATA))
    assert dest.read_bytes() == DATA
    assert srv.requests == [("/f", "bytes=5000-"), ("/f", None)]


def test_download_rejects_bytes_that_do_not_match_the_manifest(tmp_path):
    dest = tmp_path / ("0" * 64)
    with range_server({"/f": DATA}) as srv, httpx.Client(base_url=srv.url) as http:
        with pytest.raises(RegistryError, match="does not match the manifest") as info:
            download_blob(http, "/f", dest, "0" * 64, len(DATA))
    assert info.value.code == "HashMismatch"
    assert list(tmp_path.iterdir()) == []


def _manifest(version: str, files: dict[str, bytes]) -> dict:
    return {"version": version, "commit": "c" * 40,
            "files": [{"path": p, "sha256": sha256(b), "size": len(b)} for p, b in files.items()]}


def _fill(cache: Cache, version: str, files: dict[str, bytes]) -> Path:
    blobs = cache.repo_dir("acme", "senti") / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for data in files.values():
        (blobs / sha256(data)).write_bytes(data)
    return cache.build_snapshot("acme", "senti", _manifest(version, files))


def test_snapshot_layout_follows_the_hf_cache(tmp_path):
    cache = Cache(tmp_path / "cache")
    folder = _fill(cache, "1.0.0", {"adapter_config.json": b"{}", "sub/w.safetensors": b"abc"})
    cache.write_ref("acme", "senti", "stable", "1.0.0")
    repo = tmp_path / "cache" / "adapters--acme--senti"
    assert folder == repo / "snapshots" / "1.0.0"
    assert (folder / "sub" / "w.safetensors").read_bytes() == b"abc"
    assert not any(p.is_symlink() for p in folder.rglob("*"))
    assert (folder / "sub" / "w.safetensors").stat().st_ino == (repo / "blobs" / sha256(b"abc")).stat().st_ino
    assert (repo / "refs" / "stable").read_text() == "1.0.0"
    assert cache.snapshot("acme", "senti", "1.0.0") == folder
    (folder / "sub" / "w.safetensors").unlink()
    assert cache.snapshot("acme", "senti", "1.0.0") is None  # incomplete snapshots are not used


@pytest.mark.parametrize("path", ["../evil", "/etc/passwd", "a/../../b", "a\\b", "", "a//b"])
def test_manifest_paths_that_escape_are_refused(path):
    with pytest.raises(InvalidAdapterError, match="unsafe file path"):
        safe_relpath(path)


def test_ref_names_record_default_alias_and_pins():
    assert ref_name(parse_reference("a/b")) == "default"
    assert ref_name(parse_reference("a/b:canary")) == "canary"
    assert ref_name(parse_reference("a/b@1.2.0")) == "@1.2.0"


def test_offline_resolution_reads_refs_and_names_the_missing_reference(tmp_path):
    cache = Cache(tmp_path / "cache")
    folder = _fill(cache, "1.0.0", {"adapter_config.json": b"{}"})
    cache.write_ref("acme", "senti", "stable", "1.0.0")
    assert cache.resolve_offline(parse_reference("acme/senti:stable")) == ("1.0.0", folder)
    assert cache.resolve_offline(parse_reference("acme/senti@1.0.0")) == ("1.0.0", folder)
    for missing in ("acme/senti:canary", "acme/senti@2.0.0", "acme/other"):
        with pytest.raises(OfflineError, match=f"ADAPTERHUB_OFFLINE=1 and {missing} is not in the local cache"):
            cache.resolve_offline(parse_reference(missing))


def test_prune_removes_unreferenced_snapshots_and_unused_blobs(tmp_path):
    cache = Cache(tmp_path / "cache")
    _fill(cache, "1.0.0", {"adapter_config.json": b"{}", "w.safetensors": b"old" * 1000})
    _fill(cache, "1.1.0", {"adapter_config.json": b"{}", "w.safetensors": b"new" * 1000})
    cache.write_ref("acme", "senti", "stable", "1.1.0")
    out = cache.prune()
    assert out == {"snapshots": ["acme/senti@1.0.0"], "blobs": 1, "freed": 3000}
    assert cache.snapshot("acme", "senti", "1.1.0") is not None
    assert [r["versions"] for r in cache.list()] == [["1.1.0"]]
    assert cache.prune() == {"snapshots": [], "blobs": 0, "freed": 0}


def test_lock_is_exclusive_across_processes(tmp_path):
    cache = Cache(tmp_path / "cache")
    probe = (
        "import sys, filelock; from adapterhub.registry.cache import Cache\n"
        "lock = Cache(sys.argv[1]).lock('acme', 'senti')\n"
        "try:\n    lock.acquire(timeout=0.3)\nexcept filelock.Timeout:\n    sys.exit(3)\n"
    )
    with cache.lock("acme", "senti"):
        held = subprocess.run([sys.executable, "-c", probe, str(cache.root)], timeout=60)
    free = subprocess.run([sys.executable, "-c", probe, str(cache.root)], timeout=60)
    assert (held.returncode, free.returncode) == (3, 0)
