"""Disk full during an upload: the blob folder is a 2 MiB tmpfs (root mounts one; without root
the test is skipped, not faked). The push fails with 507 ``InsufficientStorage``, the partial
file is gone (so the space is free again), nothing half-written is visible, and the server keeps
serving; after a restart the registry is consistent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import adapterhub as ah
from adapterhub.registry.server.blobstore import LocalBlobStore, StorageFull
from tests.faults.support import assert_clean_log, assert_error, writer
from tests.helpers.consistency import check_consistent
from tests.helpers.live_server import run_server, start_server, stop_server
from tests.registry.factory import adapter_files, manifest, push, sha

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

LIMIT = "2m"


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "blobs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={LIMIT}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_upload_discard_after_disk_full_removes_the_partial_file(small_disk: Path):
    """Small writes leave bytes in the file buffer, so closing the file fails with ENOSPC again;
    the partial file must go anyway, or the disk stays full until the next restart."""
    store = LocalBlobStore(small_disk)
    up = store.upload()
    with pytest.raises(StorageFull, match="no space left"):
        for _ in range(1000):
            up.write(b"x" * 3000)
    up.discard()
    assert list((small_disk / "tmp").iterdir()) == []


def test_disk_full_during_upload_answers_507_and_keeps_serving(tmp_path: Path, small_disk: Path):
    home = tmp_path / "home"
    env = {"ADAPTERHUB_BLOB_URL": f"file://{small_disk}"}
    srv = start_server(home, env=env)
    try:
        token, c = writer(srv, "disk")
        acked = {("a", "1.0.0"): adapter_files(1)}
        assert push(c, "disk", "a", "1.0.0", adapter_files(1), alias="stable").status_code == 201

        big = os.urandom(3 * 1024 * 1024)  # more than the whole filesystem
        r = c.put(f"/api/v1/blobs/{sha(big)}", content=big)
        assert_error(r, 507, "InsufficientStorage")
        assert "no space left" in r.json()["detail"]
        assert list((small_disk / "tmp").iterdir()) == []  # the partial upload is gone ...
        assert os.statvfs(small_disk).f_bfree * os.statvfs(small_disk).f_frsize > 1024 * 1024  # ... with its space
        files = {**adapter_files(2), "big.dat": big}
        r = c.post("/api/v1/adapters/disk/a/versions", json={"version": "1.1.0", "files": manifest(files)})
        assert (r.status_code, r.json()["code"]) == (422, "BlobMissing")

        folder = tmp_path / "folder"  # what a user of the client sees
        folder.mkdir()
        for path, data in files.items():
            (folder / path).write_bytes(data)
        with ah.Hub(srv.url, token=token, cache_dir=tmp_path / "cache", progress=False) as hub, \
                pytest.raises(ah.AdapterHubError, match="no space left") as caught:
            hub.push(folder, "disk/a", version="1.1.0")
        assert (caught.value.status, caught.value.code) == (507, "InsufficientStorage")

        assert c.get("/api/v1/adapters/disk/a/versions/1.0.0/files/adapter_config.json").content == \
            adapter_files(1)["adapter_config.json"]
        assert push(c, "disk", "a", "1.2.0", adapter_files(3)).status_code == 201  # still takes what fits
        acked[("a", "1.2.0")] = adapter_files(3)
        assert_clean_log(srv)
    finally:
        stop_server(srv)

    with run_server(home, env=env) as srv:  # restarted: consistent
        check_consistent(srv.url, token, "disk", acked)
        assert list((small_disk / "tmp").iterdir()) == []
