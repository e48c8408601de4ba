"""The REST API (``/api/v1``): every catalogued bad input, its exact refusal, and no change at all.

Uploads, manifests, names and references, ``adapter_config.json``, tokens, private adapters.
The failed-authentication rate limit comes last: it is the one case that leaves a mark (a
blocked address), so it runs from an address of its own.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from adapterhub.format import DTYPE_BYTES
from tests.bad_inputs.support import (
    ALIAS_RULE,
    AUTH_FAIL_LIMIT,
    FIVE_GB,
    HUGE_HEADER,
    LONG_NAME,
    LOOKALIKE,
    LOOKALIKE_NS,
    MAX_UPLOAD,
    NAME_RULE,
    NOT_JSON_HEADER,
    OVERLAPPING,
    PAST_THE_END,
    PICKLE,
    SEMVER_RULE,
    TRIPWIRE,
    UNKNOWN_DTYPE,
    UNUSABLE_DTYPE,
    Refusal,
    World,
    check_refusal,
    gzip_bomb,
    parse_raw,
    raw_request,
    zip_bomb,
)
from tests.registry.factory import manifest, safetensors_bytes, sha, upload

TARGET = "/api/v1/adapters/alice/target"
CONFIG = json.dumps({"peft_type": "LORA", "r": 2}).encode()
WEIGHTS = safetensors_bytes(7)


def _files(weights: bytes = WEIGHTS, config: bytes = CONFIG, **extra: bytes) -> dict[str, bytes]:
    return {"adapter_config.json": config, "adapter_model.safetensors": weights, **extra}


def publish(id: str, files: dict[str, bytes], code: str, detail: str, status: int = 422,
            entries: list[dict] | None = None, version: str = "2.0.0") -> Refusal:
    """A version whose blobs are all uploaded (before the snapshot) but whose manifest or contents are bad."""
    body = {"version": version, "files": entries if entries is not None else manifest(files)}
    return Refusal(id, lambda w: w.client("write").post(f"{TARGET}/versions", json=body), status, code, detail,
                   setup=lambda w: upload(w.client("write"), files))


def with_path(id: str, path: str, reason: str) -> Refusal:
    files = _files()
    entries = manifest(files) + [{"path": path, "sha256": sha(CONFIG), "size": len(CONFIG)}]
    return publish(id, files, "BadPath", f"bad path {path!r}: {reason}", entries=entries)


def config(id: str, cfg: dict, detail: str) -> Refusal:
    return publish(id, _files(config=json.dumps(cfg).encode()), "InvalidManifest", f"adapter_config.json: {detail}")


def weights(id: str, data: bytes, detail: str) -> Refusal:
    return publish(id, _files(weights=data), "BadSafetensors", f"adapter_model.safetensors: {detail}")


def put_blob(data: bytes, who: str | None = "write", digest: str | None = None, **headers: str):
    return lambda w: w.client(who).put(f"/api/v1/blobs/{digest or sha(data)}", content=data, headers=headers)


def raw_put(length: int, body: bytes = b"", half_close: bool = False):
    def send(w: World) -> httpx.Response | None:
        head = (f"PUT /api/v1/blobs/{sha(b'never sent')} HTTP/1.1\nHost: 127.0.0.1\n"
                f"Authorization: Bearer {w.tokens['write']}\nContent-Length: {length}\n"
                + ("" if half_close else "Connection: close\n"))
        answer = raw_request(w, head, body, half_close)
        return parse_raw(answer) if answer else None
    return send


def get(path: str, who: str | None = None, **params: str):
    return lambda w: w.client(who).get(path, params=params)


def create(ns: str, name: str, who: str = "write"):
    return lambda w: w.client(who).post("/api/v1/adapters", json={"namespace": ns, "name": name})


def publish_as(who: str | None, headers: dict | None = None):
    """A good version published by token ``who`` (or with a raw ``Authorization`` header)."""
    body = {"version": "2.0.0", "files": manifest(_files())}

    def send(w: World) -> httpx.Response:
        if headers is None:
            return w.client(who).post(f"{TARGET}/versions", json=body)
        with httpx.Client(base_url=w.server.url, headers=headers) as c:
            return c.post(f"{TARGET}/versions", json=body)
    return send


ZIP_BOMB = zip_bomb()
GZIP_BOMB = gzip_bomb()
MANY = {"version": "2.0.0", "files": [{"path": f"f{i}.txt", "sha256": sha(CONFIG), "size": len(CONFIG)}
                                      for i in range(10_000)]}
HIDDEN_MSG = "adapter secret/hidden not found (or you may not read it)"

CASES = [
    # -- uploads -------------------------------------------------------------------------
    Refusal("truncated body", raw_put(5000, b"t" * 1000, half_close=True), None),
    Refusal("wrong sha256", put_blob(b"payload", digest=sha(b"other")), 422, "HashMismatch",
            f"body hashes to {sha(b'payload')}, not {sha(b'other')}"),
    Refusal("sha256 not hex", put_blob(b"payload", digest="ABC"), 422, "InvalidManifest",
            "bad sha256 'ABC': expected 64 lowercase hex digits"),
    Refusal("no content-length", lambda w: w.client("write").put(f"/api/v1/blobs/{sha(b'abc')}", content=iter([b"abc"])),
            411, "LengthRequired", "send the blob with a Content-Length header"),
    Refusal("5 GB declared", raw_put(FIVE_GB), 413, "TooLarge", f"blob of {FIVE_GB} bytes exceeds the limit of {MAX_UPLOAD}"),
    Refusal("gzip bomb", put_blob(GZIP_BOMB, **{"Content-Encoding": "gzip"}), 415, "UnsupportedEncoding",
            "Content-Encoding 'gzip' is not accepted: send the blob's raw bytes"),
    publish("wrong size", _files(), "SizeMismatch",
            f"adapter_config.json: declared {len(CONFIG) + 1} bytes, the uploaded blob has {len(CONFIG)}",
            entries=[{**manifest(_files())[0], "size": len(CONFIG) + 1}, manifest(_files())[1]]),
    publish("5 GB in the manifest", _files(), "SizeMismatch",
            f"adapter_model.safetensors: declared {FIVE_GB} bytes, the uploaded blob has {len(WEIGHTS)}",
            entries=[manifest(_files())[0], {**manifest(_files())[1], "size": FIVE_GB}]),
    weights("header length 2^62", HUGE_HEADER,
            f"header length {2**62} exceeds the limit or the file size ({len(HUGE_HEADER)} bytes)"),
    weights("header not json", NOT_JSON_HEADER,
            "header is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    weights("offsets past the end", PAST_THE_END, "tensor 'w' offsets [0, 8] lie outside the data (4 bytes)"),
    weights("overlapping tensors", OVERLAPPING, "tensors 'a' and 'b' overlap"),
    # one dtype table for server and engine: what the server accepts, the engine loads
    weights("unknown dtype", UNKNOWN_DTYPE, "tensor 'w' has dtype 'Q4', which adapterhub cannot load (one of "
            + ", ".join(DTYPE_BYTES) + ")"),
    weights("dtype the engine cannot load", UNUSABLE_DTYPE, "tensor 'w' has dtype 'F8_E4M3', which adapterhub "
            "cannot load (one of " + ", ".join(DTYPE_BYTES) + ")"),
    weights("0-byte weights", b"", "0 bytes is too short for a safetensors file"),
    weights("zip bomb as weights", ZIP_BOMB,
            f"header length {int.from_bytes(ZIP_BOMB[:8], 'little')} exceeds the limit or the file size "
            f"({len(ZIP_BOMB)} bytes)"),
    publish("0-byte config", _files(config=b""), "InvalidManifest",
            "adapter_config.json is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    *[publish(f"pickle {suffix}", {"adapter_config.json": CONFIG, f"adapter_model{suffix}": PICKLE}, "PickleRefused",
              f"refused 'adapter_model{suffix}': pickle-based weights (.bin, .pt, .pth, .pkl, .pickle, .ckpt) "
              "can run code; save them as safetensors") for suffix in (".bin", ".pt", ".pkl")],
    with_path("path with ..", "a/../../evil.json", "'..' segments are not allowed"),
    with_path("absolute path", "/etc/passwd", "must be relative, with '/' separators"),
    with_path("NUL in a name", "bad\x00name.json", "control characters are not allowed"),
    with_path("escape in a name", "bad\x1b[2Jname.json", "control characters are not allowed"),
    Refusal("10,000 files", lambda w: w.client("write").post(f"{TARGET}/versions", json=MANY), 422, "TooManyFiles",
            "a version may hold at most 1000 files, this one lists 10000", setup=lambda w: upload(w.client("write"), {"c": CONFIG})),
    # -- adapter_config.json -------------------------------------------------------------
    publish("config not json", _files(config=b"{not json"), "InvalidManifest",
            "adapter_config.json is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)"),
    publish("config not an object", _files(config=b"[1, 2]"), "InvalidManifest",
            "adapter_config.json must hold a JSON object, found list"),
    config("peft_type not a name", {"peft_type": "lora; rm -rf /", "r": 2},
           "peft_type 'lora; rm -rf /' is not a method name such as 'LORA'"),
    config("r = 0", {"peft_type": "LORA", "r": 0}, "r must be a positive integer, got 0"),
    config("negative r", {"peft_type": "LORA", "r": -4}, "r must be a positive integer, got -4"),
    config("r not an integer", {"peft_type": "LORA", "r": "8"}, "r must be a positive integer, got '8'"),
    config("target_modules not strings", {"peft_type": "LORA", "r": 2, "target_modules": [1]},
           "target_modules must be a string or a list of strings, got [1]"),
    # -- names and references ------------------------------------------------------------
    Refusal("look-alike name", create("alice", LOOKALIKE), 422, "InvalidName", f"invalid adapter name {LOOKALIKE!r}: {NAME_RULE}"),
    Refusal("upper case", create("alice", "Target"), 422, "InvalidName", f"invalid adapter name 'Target': {NAME_RULE}"),
    Refusal("leading dot", create("alice", ".target"), 422, "InvalidName", f"invalid adapter name '.target': {NAME_RULE}"),
    Refusal("300 characters", create("alice", LONG_NAME), 422, "InvalidName", f"invalid adapter name {LONG_NAME!r}: {NAME_RULE}"),
    Refusal("look-alike namespace", create(LOOKALIKE_NS, "target"), 422, "InvalidName",
            f"invalid namespace {LOOKALIKE_NS!r}: {NAME_RULE}"),
    Refusal("read upper-case namespace", get("/api/v1/adapters/Alice/target"), 422, "InvalidName",
            f"invalid namespace 'Alice': {NAME_RULE}"),
    Refusal("read look-alike name", get(f"/api/v1/adapters/alice/{LOOKALIKE}"), 422, "InvalidName",
            f"invalid adapter name {LOOKALIKE!r}: {NAME_RULE}"),
    publish("publish not-semver", _files(), "InvalidName", f"invalid version '1.0': {SEMVER_RULE}", version="1.0"),
    Refusal("read @not-semver", get(f"{TARGET}/versions/not-semver"), 422, "InvalidName",
            f"invalid version 'not-semver': {SEMVER_RULE}"),
    Refusal("resolve @not-semver", get(f"{TARGET}/resolve", ref="@not-semver"), 422, "InvalidName",
            f"invalid version 'not-semver': {SEMVER_RULE}"),
    Refusal("resolve :alias/with/slash", get(f"{TARGET}/resolve", ref=":alias/with/slash"), 422, "InvalidName",
            f"invalid alias 'alias/with/slash': {ALIAS_RULE}"),
    Refusal("alias upper case", lambda w: w.client("write").put(f"{TARGET}/aliases/Stable", json={"version": "1.0.0"}),
            422, "InvalidName", f"invalid alias 'Stable': {ALIAS_RULE}"),
    # -- auth ----------------------------------------------------------------------------
    Refusal("no token", publish_as(None), 401, "Unauthorized", "this call needs a token (Authorization: Bearer <token>)"),
    Refusal("malformed header", publish_as(None, {"Authorization": "Basic YWxpY2U6cHc="}), 401, "Unauthorized",
            "malformed Authorization header: expected 'Bearer <token>'"),
    Refusal("unknown token", publish_as(None, {"Authorization": "Bearer ah_0123456789abcdef_guess"}), 401,
            "Unauthorized", "invalid, expired or revoked token"),
    Refusal("expired token", publish_as("expired"), 401, "Unauthorized",
            lambda w: f"token {w.token_id('expired')} expired at 2000-01-01 00:00 UTC"),
    Refusal("revoked token", publish_as("revoked"), 401, "Unauthorized",
            lambda w: re.compile(rf"token {w.token_id('revoked')} was revoked at \d{{4}}-\d\d-\d\d \d\d:\d\d UTC")),
    Refusal("read-only token publishes", publish_as("read"), 403, "Forbidden",
            "your token has no write scope on namespace 'alice'"),
    Refusal("read-only token uploads", put_blob(b"payload", who="read"), 403, "Forbidden",
            "uploading blobs needs a write scope"),
    Refusal("token for another namespace", publish_as("other"), 403, "Forbidden",
            "your token has no write scope on namespace 'alice'"),
    Refusal("private adapter by name", get("/api/v1/adapters/secret/hidden"), 404, "RepoNotFound", HIDDEN_MSG,
            twin=get("/api/v1/adapters/secret/hiddex")),
    Refusal("private adapter, another user's token", get("/api/v1/adapters/secret/hidden", "other"), 404,
            "RepoNotFound", HIDDEN_MSG, twin=get("/api/v1/adapters/secret/hiddex", "other")),
    Refusal("private file", get("/api/v1/adapters/secret/hidden/versions/1.0.0/files/adapter_config.json"), 404,
            "RepoNotFound", HIDDEN_MSG, twin=get("/api/v1/adapters/secret/hiddex/versions/1.0.0/files/adapter_config.json")),
    Refusal("private namespace", get("/api/v1/namespaces/secret"), 404, "RepoNotFound",
            "namespace 'secret' not found (or you may not read it)", twin=get("/api/v1/namespaces/secrex")),
    Refusal("private adapter by search", get("/api/v1/adapters", q="hidden"), 200,
            body={"items": [], "next_cursor": None}, twin=get("/api/v1/adapters", q="hiddex")),
    Refusal("private namespace by search", get("/api/v1/adapters", namespace="secret"), 200,
            body={"items": [], "next_cursor": None}, twin=get("/api/v1/adapters", namespace="secrex")),
]


def _rate_limited(w: World) -> httpx.Response:
    """The limit's worth of bad tokens from 127.0.0.2 (its own failure count), then even a good token is refused."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=w.server.url, transport=transport, timeout=30) as c:
        bad = {"Authorization": "Bearer ah_0123456789abcdef_guess"}
        codes = [c.get("/api/v1/whoami", headers=bad).status_code for _ in range(AUTH_FAIL_LIMIT)]
        assert codes == [401] * AUTH_FAIL_LIMIT
        r = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {w.tokens['write']}"})
        assert r.headers["retry-after"] == "60"
        assert c.get("/api/v1/adapters").status_code == 200  # anonymous reads go on
        return r


CASES.append(Refusal("repeated bad tokens", _rate_limited, 429, "RateLimited",
                     "too many failed authentications from this address; retry later"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_http_api_refuses(world, case):
    check_refusal(world, case)
    assert not TRIPWIRE.exists(), "a pickle was unpickled"
