"""Regression tests for the input findings of the 2026-12 audit (shared/SECURITY_FINDINGS.md D7, D9,
D10, D14-D17), against real servers over SQLite and PostgreSQL: each refusal has its exact status
and code, a message naming the rule, and leaves every row and every blob as it was."""

from __future__ import annotations

import http.client
import json
import threading
import time
import types
import uuid

import pytest

from adapterhub.errors import InvalidReferenceError
from adapterhub.registry.reference import (
    NAME_RE,
    Reference,
    check_alias,
    check_name,
    check_version,
    parse_reference,
    semver_key,
)
from adapterhub.registry.server.routes.hf import _tree
from tests.helpers.live_server import free_port
from tests.helpers.snapshots import assert_still, database_state, folder_state
from tests.registry.factory import adapter_files, manifest, raw_safetensors, sha, upload

CONFIG = json.dumps({"peft_type": "LORA", "r": 2}).encode()
DEEP_LIST = b"[" * 100_000 + b"]" * 100_000


def state(server) -> tuple:
    return database_state(server), folder_state(server.home / "blobs")


def refused(server, send, status: int, code: str, fragment: str):
    """Send once; assert the error (body, headers) and that nothing at all changed."""
    before = state(server)
    r = send()
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and r.headers["x-error-code"] == code, body
    assert fragment in body["detail"], body["detail"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert_still(before, lambda: state(server))
    return r


def new_adapter(c, ns: str, files: dict[str, bytes]) -> str:
    name = f"a{uuid.uuid4().hex[:8]}"
    assert c.post("/api/v1/adapters", json={"namespace": ns, "name": name}).status_code == 201
    upload(c, files)
    return name


def publish_refused(server, user, files: dict[str, bytes], code: str, fragment: str,
                    entries: list[dict] | None = None, version: str = "1.0.0", alias: str | None = None) -> None:
    ns, c = user
    name = new_adapter(c, ns, files)
    body = {"version": version, "files": entries or manifest(files), **({"alias": alias} if alias else {})}
    refused(server, lambda: c.post(f"/api/v1/adapters/{ns}/{name}/versions", json=body), 422, code, fragment)
    assert c.get(f"/api/v1/adapters/{ns}/{name}/versions/1.0.0").status_code == 404


# -- D9: a trailing newline is not part of a valid name -------------------------------------------

def test_reference_checks_refuse_a_trailing_newline():
    for check in (lambda: check_name("bob\n"), lambda: check_alias("stable\n"), lambda: check_version("1.0.0\n"),
                  lambda: semver_key("1.0.0\n"), lambda: parse_reference("acme/x@\u0661.0.0")):
        with pytest.raises(InvalidReferenceError):
            check()
    assert NAME_RE.match("bob\n") is None  # the pattern itself, for callers that use .match


@pytest.mark.parametrize("what", ["namespace", "user", "adapter", "version", "alias in publish", "alias",
                                  "read"])
def test_names_with_a_trailing_newline_are_refused(server, admin, user, what):
    ns, c = user
    name = new_adapter(c, ns, adapter_files())
    base = f"/api/v1/adapters/{ns}/{name}"
    assert c.post(f"{base}/versions", json={"version": "1.0.0", "files": manifest(adapter_files())}).status_code == 201
    send, fragment = {
        "namespace": (lambda: admin.post("/api/v1/namespaces", json={"name": "bob\n"}), "invalid namespace 'bob\\n'"),
        "user": (lambda: admin.post("/api/v1/users", json={"name": "carol\n"}), "invalid user name 'carol\\n'"),
        "adapter": (lambda: c.post("/api/v1/adapters", json={"namespace": ns, "name": "stolen\n"}),
                    "invalid adapter name 'stolen\\n'"),
        "version": (lambda: c.post(f"{base}/versions", json={"version": "1.0.1\n", "files": manifest(adapter_files())}),
                    "invalid version '1.0.1\\n'"),
        "alias in publish": (lambda: c.post(f"{base}/versions", json={
            "version": "1.0.1", "files": manifest(adapter_files()), "alias": "stable\n"}), "invalid alias 'stable\\n'"),
        "alias": (lambda: c.put(f"{base}/aliases/stable%0A", json={"version": "1.0.0"}), "invalid alias 'stable\\n'"),
        "read": (lambda: c.get(f"/api/v1/adapters/{ns}%0A/{name}"), f"invalid namespace '{ns}\\n'"),
    }[what]
    refused(server, send, 422, "InvalidName", fragment)


# -- D10: JSON the parser cannot take is a 422, and anything unexpected a clean 500 --------------

@pytest.mark.parametrize("path,blob,code,fragment", [
    ("adapter_config.json", DEEP_LIST, "InvalidManifest", "adapter_config.json nests deeper than 64 levels"),
    ("adapterhub.json", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "InvalidManifest",
     "adapterhub.json nests deeper than 64 levels"),
    ("adapter_config.json", b'{"r": ' + b"9" * 5000 + b"}", "InvalidManifest",
     "adapter_config.json holds an integer of more than 4300 digits"),
    ("adapter_model.safetensors", raw_safetensors(b'{"a":' * 50_000 + b"1" + b"}" * 50_000), "BadSafetensors",
     "adapter_model.safetensors: header nests deeper than 64 levels"),
])
def test_deep_or_huge_number_json_in_a_version_is_422(server, user, path, blob, code, fragment):
    files = {"adapter_config.json": CONFIG, path: blob}
    publish_refused(server, user, files, code, fragment)


@pytest.mark.parametrize("body,fragment", [
    (DEEP_LIST, "invalid request: body: nested too deeply"),
    (b'{"name": ' + b"9" * 5000 + b"}", "invalid request: body: an integer of more than 4300 digits"),
])
def test_deep_or_huge_number_request_bodies_are_422(server, admin, body, fragment):
    headers = {"Content-Type": "application/json"}
    refused(server, lambda: admin.post("/api/v1/users", content=body, headers=headers), 422, "InvalidRequest",
            fragment)


def test_an_unexpected_exception_is_a_500_in_the_error_shape_logged_once(tmp_path, caplog):
    import uvicorn

    from adapterhub.registry.server import Settings, create_app

    app = create_app(Settings.from_env({"ADAPTERHUB_HOME": str(tmp_path), "ADAPTERHUB_ADMIN_TOKEN": "t" * 32}))

    @app.get("/api/v1/boom")
    def boom() -> dict:
        raise RuntimeError("a secret the client must not see")

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.config.port, timeout=30)
        conn.request("GET", "/api/v1/boom")
        r = conn.getresponse()
        sock = conn.sock
        assert r.status == 500
        assert json.loads(r.read()) == {"detail": "internal error; the server logged it", "code": "InternalError"}
        assert r.getheader("x-error-code") == "InternalError"
        assert r.getheader("x-content-type-options") == "nosniff" and r.getheader("referrer-policy") == "no-referrer"
        conn.request("GET", "/api/v1/health")  # the same connection, still open
        assert conn.getresponse().status == 200 and conn.sock is sock
        conn.close()
    finally:
        server.should_exit = True
        thread.join(10)
    tracebacks = [rec for rec in caplog.records if rec.exc_info]
    assert len(tracebacks) == 1 and "a secret" in str(tracebacks[0].exc_info[1])


# -- D14, D15: paths every client can write, and no disguised pickle -------------------------------

@pytest.mark.parametrize("paths,fragment", [
    (["x", "x/y"], "bad file set: 'x' is a file and also the folder of 'x/y'"),
    (["X", "x/y"], "bad file set: 'X' is a file and also the folder of 'x/y'"),
    (["README.md", "readme.md"], "'README.md' and 'readme.md' differ only in case or Unicode form"),
    (["caf\u00e9.md", "cafe\u0301.md"], "differ only in case or Unicode form"),
    (["d/" + "a" * 300], "a name may hold at most 255 bytes of UTF-8"),
    (["\u00e9" * 128], "a name may hold at most 255 bytes of UTF-8"),
    (["a\u0085b.txt"], "control characters are not allowed (U+0085)"),
    (["a\u202etxt.exe"], "invisible format characters are not allowed (U+202E)"),
    (["a\u200bb.txt"], "invisible format characters are not allowed (U+200B)"),
    (["a\u2028b.txt"], "line separators are not allowed (U+2028)"),
    (["x.bin "], "a name may not end in a space or a dot"),
    (["x.bin."], "a name may not end in a space or a dot"),
    (["dir./x.txt"], "a name may not end in a space or a dot"),
    (["x.bin::$DATA"], "':' is not allowed"),
    (["x.bin:stream"], "':' is not allowed"),
])
def test_unpullable_or_disguised_paths_are_refused(server, user, paths, fragment):
    files = {"adapter_config.json": CONFIG, "n": b"twelve bytes"}
    entries = manifest({"adapter_config.json": CONFIG}) + [
        {"path": p, "sha256": sha(b"twelve bytes"), "size": 12} for p in paths]
    publish_refused(server, user, files, "BadPath", fragment, entries=entries)


def test_a_255_byte_name_and_a_folder_beside_a_like_named_file_are_accepted(user):
    ns, c = user
    files = {"adapter_config.json": CONFIG, "e" * 255: b"a", "x.txt": b"b", "x/y.txt": b"c", "x!": b"d"}
    name = new_adapter(c, ns, files)
    r = c.post(f"/api/v1/adapters/{ns}/{name}/versions", json={"version": "1.0.0", "files": manifest(files)})
    assert r.status_code == 201, r.text


# -- D16: ranges on an empty file ----------------------------------------------------------------

def test_ranges_on_an_empty_file_are_416_and_huge_offsets_are_read_safely(user, anon):
    ns, c = user
    files = {"adapter_config.json": CONFIG, "empty.txt": b""}
    name = new_adapter(c, ns, files)
    assert c.post(f"/api/v1/adapters/{ns}/{name}/versions",
                  json={"version": "1.0.0", "files": manifest(files)}).status_code == 201
    base = f"/api/v1/adapters/{ns}/{name}/versions/1.0.0/files"
    for rng in ("bytes=-5", "bytes=0-", "bytes=0-0"):
        for method in (anon.get, anon.head):
            r = method(f"{base}/empty.txt", headers={"Range": rng})
            assert r.status_code == 416 and r.headers["content-range"] == "bytes */0", (rng, r.headers)
    r = anon.get(f"{base}/empty.txt")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"
    size = len(CONFIG)
    r = anon.get(f"{base}/adapter_config.json", headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    r = anon.get(f"{base}/adapter_config.json", headers={"Range": "bytes=-" + "9" * 5000})
    assert r.status_code == 206 and r.content == CONFIG
    assert r.headers["content-range"] == f"bytes 0-{size - 1}/{size}"


# -- D17: alias names that a revision look-up reads as something else ----------------------------

def test_parsing_main_is_the_bare_reference_and_other_reserved_aliases_are_refused():
    assert parse_reference("acme/x:main") == parse_reference("acme/x") == Reference("acme", "x")
    with pytest.raises(InvalidReferenceError, match=r"alias '1\.0\.0' is reserved: .*ns/name@1\.0\.0"):
        parse_reference("acme/x:1.0.0")
    with pytest.raises(InvalidReferenceError, match="reads as a commit id"):
        parse_reference("acme/x:" + "ab" * 20)


@pytest.mark.parametrize("alias,fragment", [
    ("main", "alias 'main' is reserved: it names the default revision"),
    ("1.2.0", "alias '1.2.0' is reserved: it reads as a version"),
    ("2.0.0-rc.1", "alias '2.0.0-rc.1' is reserved: it reads as a version"),
    ("0123456789abcdef0123456789abcdef01234567", "is reserved: it reads as a commit id"),
])
def test_reserved_alias_names_are_refused_wherever_an_alias_is_made(server, user, alias, fragment):
    ns, c = user
    name = new_adapter(c, ns, adapter_files())
    base = f"/api/v1/adapters/{ns}/{name}"
    assert c.post(f"{base}/versions", json={"version": "1.0.0", "files": manifest(adapter_files())}).status_code == 201
    refused(server, lambda: c.put(f"{base}/aliases/{alias}", json={"version": "1.0.0"}), 422, "InvalidName", fragment)
    refused(server, lambda: c.post(f"{base}/versions", json={
        "version": "1.0.1", "files": manifest(adapter_files()), "alias": alias}), 422, "InvalidName", fragment)
    refused(server, lambda: c.post(f"{base}/rollouts", json={"alias": alias, "canary_version": "1.0.0", "weight": 10}),
            422, "InvalidName", fragment)
    assert c.get(f"{base}/aliases").json() == {}
    assert c.get(f"/api/models/{ns}/{name}/revision/main").json()["version"] == "1.0.0"


# -- D7: the HF tree of a deep version -----------------------------------------------------------

def expected_tree(paths: list[str]) -> list[tuple[str, str]]:
    seen: dict[str, None] = {}
    for p in paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            seen.setdefault("/".join(parts[:i]))
    return [("directory", d) for d in seen] + [("file", p) for p in paths]


def test_tree_of_a_deep_version_lists_every_folder_once_in_order(user, anon):
    ns, c = user
    paths = sorted(f"d{i}/" + "a/" * 100 + "f" for i in range(400))
    name = new_adapter(c, ns, {"x": b"x"})
    entries = [{"path": p, "sha256": sha(b"x"), "size": 1} for p in paths]
    r = c.post(f"/api/v1/adapters/{ns}/{name}/versions", json={"version": "1.0.0", "files": entries})
    assert r.status_code == 201, r.text
    r = anon.get(f"/api/models/{ns}/{name}/tree/1.0.0", params={"recursive": "true"})
    assert r.status_code == 200
    assert [(e["type"], e["path"]) for e in r.json()] == expected_tree(paths)
    assert len(r.json()) == 400 * 101 + 400
    r = anon.get(f"/api/models/{ns}/{name}/tree/1.0.0/d7")
    assert [(e["type"], e["path"]) for e in r.json()] == [("directory", "d7/a")]


@pytest.mark.timeout(120)  # a list of 400k folders searched with `in` takes many minutes
def test_tree_is_linear_in_the_number_of_folders():
    files = [types.SimpleNamespace(path=f"d{i}/" + "a/" * 400 + "f", size=1, sha256="0" * 64) for i in range(1000)]
    entries = _tree(files, "", True)
    assert len(entries) == 1000 * 401 + 1000
    assert [e["path"] for e in entries[:3]] == ["d0", "d0/a", "d0/a/a"]
    assert entries[401]["path"] == "d1" and entries[-1]["path"] == files[-1].path
    assert len(_tree(files, "d3/a", True)) == 399 + 1 and _tree(files, "d3/a", False)[0]["path"] == "d3/a/a"
