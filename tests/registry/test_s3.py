"""The S3 blob backend against moto's standalone S3 server on 127.0.0.1 (streamed and presigned)."""

from __future__ import annotations

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.helpers.live_server import run_server
from tests.registry.factory import adapter_files, client, make_user, push, sha
from tests.registry.test_hf import HF_SCRIPT, run_py

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="hub")
    yield endpoint
    server.stop()


@pytest.mark.parametrize("presign", [False, True], ids=["streamed", "presigned"])
def test_s3_backend_round_trip(s3_endpoint, tmp_path, presign):
    env = {**AWS, "ADAPTERHUB_BLOB_URL": f"s3://hub/p{int(presign)}", "ADAPTERHUB_S3_ENDPOINT_URL": s3_endpoint,
           "ADAPTERHUB_S3_PRESIGN": "1" if presign else ""}
    with run_server(tmp_path / "home", env=env) as srv:
        admin = client(srv.url, srv.admin_token)
        token = make_user(admin, "s3user")
        c = client(srv.url, token)
        files = adapter_files(7)
        assert push(c, "s3user", "a", "1.0.0", files, alias="stable").status_code == 201
        assert push(c, "s3user", "a", "1.1.0", files).status_code == 201  # dedup: blobs already there
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, **{k.lower(): v for k, v in AWS.items()
                                                              if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="hub", Prefix=f"p{int(presign)}/")["Contents"]}
        assert keys == {f"p{int(presign)}/sha256/{sha(b)}" for b in files.values()}
        body = files["adapter_model.safetensors"]
        url = "/api/v1/adapters/s3user/a/versions/1.0.0/files/adapter_model.safetensors"
        assert c.get(url).content == body
        r = c.get(url, headers={"Range": "bytes=8-"})
        assert r.status_code == 206 and r.content == body[8:]
        head = httpx.head(f"{srv.url}/s3user/a/resolve/stable/adapter_model.safetensors")
        if presign:
            assert head.status_code == 302 and head.headers["x-linked-size"] == str(len(body))
            assert head.headers["x-linked-etag"] == f'"{sha(body)}"' and len(head.headers["x-repo-commit"]) == 40
            got = httpx.get(head.headers["location"])
            assert got.content == body
            assert got.headers["content-disposition"] == 'attachment; filename="adapter_model.safetensors"'
        else:
            assert head.status_code == 200 and head.headers["etag"] == f'"{sha(body)}"'
        if presign:  # the real client follows the presigned URL
            out = run_py(HF_SCRIPT.format(repo="s3user/a", priv="s3user/a", token=token), srv.url, tmp_path)
            assert bytes.fromhex(out["single"]) == body
            assert {k: bytes.fromhex(v) for k, v in out["snapshot"].items()} == files
