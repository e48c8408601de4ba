"""The blob store unreachable: S3 is moto's server in its own process, killed with SIGKILL.

While it is down, reads and writes that need blob bytes answer 503 ``BlobStoreUnavailable``
(never a 500, never a 200 cut off mid-body) and nothing half-written becomes visible; what only
needs the database (search, resolve) still answers. Moto keeps objects in memory, so the bucket
is restored from a copy taken just before the kill, as a real bucket would come back with its
objects; then everything works again without restarting the registry, and after a restart the
registry is consistent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest

from tests.faults.support import assert_clean_log, assert_error, writer
from tests.helpers.consistency import check_consistent
from tests.helpers.live_server import free_port, run_server, start_server, stop_server
from tests.registry.factory import adapter_files, manifest, push, sha, upload

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class Moto:
    """moto's S3 server as a child process on a fixed port, so that it can die and come back."""

    def __init__(self, port: int):
        self.port, self.url, self.proc = port, f"http://127.0.0.1:{port}", None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **AWS})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                assert self.proc.poll() is None, "moto server exited"
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def s3(self):
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def snapshot(self, bucket: str) -> dict[str, bytes]:
        s3 = self.s3()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}

    def restore(self, bucket: str, objects: dict[str, bytes]) -> None:
        s3 = self.s3()
        s3.create_bucket(Bucket=bucket)
        for key, data in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=data)


@pytest.fixture
def moto():
    m = Moto(free_port())
    m.start()
    m.s3().create_bucket(Bucket="hub")
    yield m
    if m.proc.poll() is None:
        m.kill()


def test_blob_store_down_answers_503_and_recovers(tmp_path: Path, moto: Moto):
    home = tmp_path / "home"
    env = {**AWS, "ADAPTERHUB_BLOB_URL": "s3://hub/blobs", "ADAPTERHUB_S3_ENDPOINT_URL": moto.url}
    srv = start_server(home, env=env)
    try:
        token, c = writer(srv, "s3")
        v1, v2 = adapter_files(1), adapter_files(2)
        acked = {("a", "1.0.0"): v1}
        assert push(c, "s3", "a", "1.0.0", v1, alias="stable").status_code == 201
        upload(c, v2)  # blobs in before the outage; publishing them needs to read the store
        kept = moto.snapshot("hub")
        moto.kill()

        file_url = "/api/v1/adapters/s3/a/versions/1.0.0/files/adapter_model.safetensors"
        assert_error(c.get(file_url), 503, "BlobStoreUnavailable")
        assert_error(httpx.get(f"{srv.url}/s3/a/resolve/stable/adapter_config.json"), 503, "BlobStoreUnavailable")
        new = b"fresh bytes"
        assert_error(c.put(f"/api/v1/blobs/{sha(new)}", content=new), 503, "BlobStoreUnavailable")
        r = c.post("/api/v1/adapters/s3/a/versions", json={"version": "1.1.0", "files": manifest(v2)})
        assert_error(r, 503, "BlobStoreUnavailable")
        assert c.get("/api/v1/adapters", params={"namespace": "s3"}).status_code == 200  # the database still answers
        assert c.get("/api/v1/adapters/s3/a/resolve", params={"ref": ":stable"}).json()["version"] == "1.0.0"
        assert [v["version"] for v in c.get("/api/v1/adapters/s3/a/versions").json()] == ["1.0.0"]
        assert c.post("/api/v1/blobs/missing", json={"sha256": [sha(new)]}).json() == {"missing": [sha(new)]}

        moto.start()
        moto.restore("hub", kept)
        assert c.get(file_url).content == v1["adapter_model.safetensors"]
        assert push(c, "s3", "a", "1.1.0", v2).status_code == 201
        assert c.put(f"/api/v1/blobs/{sha(new)}", content=new).status_code == 201
        acked[("a", "1.1.0")] = v2
        assert_clean_log(srv)
    finally:
        stop_server(srv)

    with run_server(home, env=env) as srv:  # restarted: consistent
        check_consistent(srv.url, token, "s3", acked)
