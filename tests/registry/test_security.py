"""The security pass (see SECURITY.md): token storage, secrets kept out of responses and logs, trusted
hosts, CORS, body and rate limits, and safe headers on every download route, on real servers."""

from __future__ import annotations

import hashlib
import re
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.helpers.live_server import run_server
from tests.registry.factory import adapter_files, client, make_user, push

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

ADMIN = "admin-secret"
ODD_NAMES = {"card.html": b"<script>alert(1)</script>", 'notes "v1".md': b"quoted\n",
             "docs/\u00fcber.md": b"umlaut\n"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("sec"), admin_token=ADMIN) as handle:
        yield handle


@pytest.fixture(scope="module")
def published(srv):
    """``alice/cards@1.0.0`` with an HTML file and names that need quoting; returns its files."""
    token = make_user(client(srv.url, ADMIN), "alice")
    files = {**adapter_files(), **ODD_NAMES}
    assert push(client(srv.url, token), "alice", "cards", "1.0.0", files).status_code == 201
    return files


def test_tokens_are_stored_as_salted_hashes_and_never_in_clear(srv, published):
    admin = client(srv.url, ADMIN)
    tokens = [make_user(admin, name) for name in ("tok-a", "tok-b")]
    tokens.append(admin.post("/api/v1/tokens", json={"user": "tok-a", "scope": "read",
                                                      "namespaces": ["tok-a"]}).json()["token"])
    client(srv.url, tokens[0] + "x").get("/api/v1/whoami")  # a near miss, which must not be logged either
    engine = create_engine(f"sqlite:///{srv.home / 'registry.sqlite'}")
    with engine.connect() as conn:
        rows = {r.public_id: r for r in conn.execute(text("SELECT public_id, salt, secret_hash FROM token"))}
    engine.dispose()
    salts = set()
    for tok in tokens:
        _, public_id, secret = tok.split("_", 2)
        row = rows[public_id]
        assert row.secret_hash == hashlib.sha256(bytes.fromhex(row.salt) + secret.encode()).hexdigest()
        assert len(row.salt) == 32
        salts.add(row.salt)
    assert len(salts) == len(tokens)
    for path in srv.home.rglob("*"):  # database, WAL, server log: no secret anywhere on disk
        if path.is_file():
            data = path.read_bytes()
            for tok in tokens:
                assert tok.split("_", 2)[2].encode() not in data, path


def test_a_token_is_shown_only_by_the_call_that_creates_it(srv):
    schemas = client(srv.url).get("/api/v1/openapi.json").json()["components"]["schemas"]
    holders = {name for name, s in schemas.items() for field in s.get("properties", {})
               if field in ("token", "secret", "salt", "secret_hash")}
    assert holders == {"TokenCreated"}
    admin = client(srv.url, ADMIN)
    token = make_user(admin, "shown-once")
    secret = token.split("_", 2)[2]
    for path in ("/api/v1/whoami", "/api/v1/namespaces/shown-once", "/api/v1/adapters"):
        assert secret not in client(srv.url, token).get(path).text


def test_bad_tokens_all_get_the_same_answer(srv):
    real = make_user(client(srv.url, ADMIN), "probe")
    _, public_id, secret = real.split("_", 2)
    answers = set()
    wrong = secret[:-1] + ("B" if secret.endswith("A") else "A")  # the last character changed, always
    for bad in (f"ah_{public_id}_{wrong}", f"ah_0123456789abcdef_{secret}", "ah_nounderscore", "garbage"):
        r = client(srv.url, bad).get("/api/v1/whoami")
        answers.add((r.status_code, r.text, r.headers.get("www-authenticate")))
    assert answers == {(401, '{"detail":"invalid, expired or revoked token","code":"Unauthorized"}', "Bearer")}


def test_downloads_are_attachments_with_nosniff_on_every_route(srv, published):
    commit = client(srv.url).get("/api/models/alice/cards/revision/1.0.0").json()["sha"]
    expected = {"card.html": 'attachment; filename="card.html"',
                'notes "v1".md': "attachment; filename=\"notes _v1_.md\"; filename*=UTF-8''notes%20%22v1%22.md",
                "docs/\u00fcber.md": "attachment; filename=\"_ber.md\"; filename*=UTF-8''%C3%BCber.md",
                "adapter_model.safetensors": 'attachment; filename="adapter_model.safetensors"'}
    c = client(srv.url)
    for path, disposition in expected.items():
        data = published[path]
        for url in (f"/api/v1/adapters/alice/cards/versions/1.0.0/files/{path}", f"/alice/cards/resolve/1.0.0/{path}",
                    f"/alice/cards/resolve/main/{path}"):
            for method in ("GET", "HEAD"):
                r = c.request(method, url, headers={"Accept-Encoding": "gzip"})
                assert r.status_code == 200, (method, url, r.text)
                assert r.headers["content-disposition"] == disposition
                assert r.headers["x-content-type-options"] == "nosniff"
                assert r.headers["content-type"] == "application/octet-stream"
                assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
                assert r.headers["content-length"] == str(len(data))
                assert "content-encoding" not in r.headers  # HF clients count the raw bytes
                assert r.content == (data if method == "GET" else b"")
                if "/resolve/" in url:
                    assert r.headers["x-repo-commit"] == commit  # what huggingface_hub requires
    missing = c.head("/alice/cards/resolve/1.0.0/nope.bin")
    assert (missing.status_code, missing.headers["x-error-code"]) == (404, "EntryNotFound")
    assert missing.headers["x-repo-commit"] == commit and missing.headers["x-content-type-options"] == "nosniff"


def test_every_response_carries_the_safe_headers(srv):
    for r in (client(srv.url).get("/api/v1/adapters"), client(srv.url).get("/api/v1/adapters/no/such"),
              client(srv.url, "ah_x_y").get("/api/v1/whoami")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"


def test_unknown_host_headers_are_refused_by_default(srv):
    for host in ("localhost", f"127.0.0.1:{srv.port}", f"localhost:{srv.port}"):
        assert client(srv.url).get("/api/v1/adapters", headers={"Host": host}).status_code == 200
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):
        r = client(srv.url).get("/api/v1/adapters", headers={"Host": host})
        assert (r.status_code, r.text) == (400, "Invalid host header")


def test_no_cross_origin_reads_by_default(srv):
    c = client(srv.url)
    r = c.get("/api/v1/adapters", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = c.options("/api/v1/adapters", headers={"Origin": "https://evil.example",
                                              "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    """A server with explicit hosts, one CORS origin and a 4 KiB cap on request bodies."""
    env = {"ADAPTERHUB_TRUSTED_HOSTS": "127.0.0.1, hub.example.com", "ADAPTERHUB_CORS_ORIGINS": "https://ui.example",
           "ADAPTERHUB_MAX_REQUEST_BYTES": "4096", "ADAPTERHUB_MAX_UPLOAD_BYTES": "65536"}
    with run_server(tmp_path_factory.mktemp("configured"), admin_token=ADMIN, env=env) as handle:
        yield handle


def test_configured_hosts_replace_the_defaults(configured):
    c = client(configured.url)
    assert c.get("/api/v1/adapters", headers={"Host": "hub.example.com"}).status_code == 200
    assert c.get("/api/v1/adapters", headers={"Host": "localhost"}).status_code == 400


def test_cors_answers_only_the_configured_origin(configured):
    c = client(configured.url)
    pre = c.options("/api/v1/adapters/a/b/versions", headers={
        "Origin": "https://ui.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://ui.example"
    assert "access-control-allow-credentials" not in pre.headers  # bearer tokens, never cookies
    r = c.get("/api/v1/adapters", headers={"Origin": "https://ui.example"})
    assert r.headers["access-control-allow-origin"] == "https://ui.example"
    assert {"etag", "x-error-code", "x-repo-commit"} <= set(r.headers["access-control-expose-headers"].lower().split(", "))
    other = c.options("/api/v1/adapters", headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "GET"})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def test_request_bodies_past_the_limit_are_refused(configured):
    admin = client(configured.url, ADMIN)
    big = {"name": "x" * 5000}
    r = admin.post("/api/v1/users", json=big)
    assert r.status_code == 413 and r.json()["code"] == "TooLarge"
    assert r.json()["detail"].startswith("request body of ")
    assert "exceeds the limit of 4096 (ADAPTERHUB_MAX_REQUEST_BYTES)" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"name": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = admin.post("/api/v1/users", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "TooLarge"
    assert admin.get("/api/v1/namespaces/" + "y" * 10).status_code == 404  # nothing was created
    blob = b"z" * 20000  # blob uploads have their own, larger limit
    r = admin.put(f"/api/v1/blobs/{hashlib.sha256(blob).hexdigest()}", content=blob)
    assert r.status_code == 201, r.text


def test_requests_past_the_rate_are_told_when_to_retry(tmp_path):
    env = {"ADAPTERHUB_RATE_LIMIT": "0.5", "ADAPTERHUB_RATE_BURST": "5"}
    with run_server(tmp_path, admin_token=ADMIN, env=env) as s:
        c = client(s.url)
        codes = [c.get("/api/v1/adapters").status_code for _ in range(5)]  # the health polls were exempt
        assert codes == [200] * 5
        r = c.get("/api/v1/adapters")
        assert r.status_code == 429 and r.headers["x-error-code"] == "RateLimited"
        assert 1 <= int(r.headers["retry-after"]) <= 2
        assert re.fullmatch(r"too many requests from this address; retry in [12]s", r.json()["detail"])
        assert c.get("/api/v1/health").status_code == 200
        time.sleep(int(r.headers["retry-after"]))
        assert c.get("/api/v1/adapters").status_code == 200


def test_repeated_bad_tokens_are_blocked_until_the_window_passes(tmp_path):
    env = {"ADAPTERHUB_AUTH_FAIL_LIMIT": "3", "ADAPTERHUB_AUTH_FAIL_WINDOW": "3"}
    with run_server(tmp_path, admin_token=ADMIN, env=env) as s:
        bad = client(s.url, "ah_0000_wrong")
        assert [bad.get("/api/v1/whoami").status_code for _ in range(3)] == [401] * 3
        r = client(s.url, ADMIN).get("/api/v1/whoami")
        assert r.status_code == 429 and r.json()["code"] == "RateLimited"
        retry = int(r.headers["retry-after"])
        assert 1 <= retry <= 3
        time.sleep(retry + 0.2)
        assert client(s.url, ADMIN).get("/api/v1/whoami").status_code == 200


def test_admin_token_stays_out_of_the_server_log(tmp_path):
    with run_server(tmp_path, admin_token="very-secret-admin-token") as s:
        client(s.url, "very-secret-admin-token").get("/api/v1/whoami")
        httpx.get(f"{s.url}/api/v1/whoami", headers={"Authorization": "Bearer very-secret-admin-token-typo"})
        assert "very-secret-admin-token" not in s.log()
