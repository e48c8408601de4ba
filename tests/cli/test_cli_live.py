"""Every command through CliRunner against a real registry server."""

from __future__ import annotations

import httpx
import pytest

from adapterhub.registry import config
from adapterhub.registry.client import Hub
from tests.cli.support import js, ok, run
from tests.client.support import folder_bytes, make_adapter, proxy, sha256


def _user_token(server, name: str, scope: str = "write") -> str:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    r = httpx.post(f"{server.url}/api/v1/users", json={"name": name}, headers=admin)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{server.url}/api/v1/tokens", headers=admin,
                   json={"user": name, "scope": scope, "namespaces": [name], "expires_at": None, "name": "t"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_login_stores_the_token_privately_and_never_echoes_it(online, monkeypatch):
    monkeypatch.delenv("ADAPTERHUB_TOKEN")
    token = _user_token(online, "alice")
    result = run("login", input=token + "\n")
    assert result.exit_code == 0, result.output
    assert token not in result.output and "as alice" in result.output
    assert config.read_token() == token
    assert oct(config.token_path().stat().st_mode & 0o777) == "0o600"
    assert js("whoami")["user"] == "alice"
    assert "alice" in ok("whoami").stdout
    ok("logout")
    result = run("whoami")
    assert result.exit_code == 1 and "adapterhub login" in result.output


def test_login_refuses_a_bad_token(online, monkeypatch):
    monkeypatch.delenv("ADAPTERHUB_TOKEN")
    result = run("login", "--token-stdin", input="ah_nope_nope\n")
    assert result.exit_code == 1 and result.output.startswith("Error: not authorised:")
    assert config.read_token() is None


def test_push_without_token_says_how_to_log_in(online, monkeypatch, tmp_path):
    monkeypatch.delenv("ADAPTERHUB_TOKEN")
    result = run("push", make_adapter(tmp_path / "a"), "acme/no-token", "--version", "1.0.0")
    assert result.exit_code == 1
    assert "run `adapterhub login` or set ADAPTERHUB_TOKEN" in result.output
    assert result.output.count("\n") == 1


def test_push_search_show_versions_pull(online, tmp_path):
    folder = make_adapter(tmp_path / "a", seed=1)
    out = js("push", folder, "acme/flow", "--version", "1.0.0", "--alias", "stable")
    assert out["version"] == "1.0.0" and len(out["commit"]) == 40
    assert {f["path"] for f in out["files"]} == set(folder_bytes(folder))
    found = js("search", "flow", "--method", "lora")
    assert [f"{a['namespace']}/{a['name']}" for a in found] == ["acme/flow"]
    assert "acme/flow" in ok("search", "flow").stdout
    assert js("search", "flow", "--base-model", "other/model") == []
    shown = js("show", "acme/flow")
    assert (shown["method"], shown["base_model"], shown["task"]) == ("lora", "tiny/base", "text-classification")
    assert shown["aliases"] == {"stable": "1.0.0"} and shown["version"]["version"] == "1.0.0"
    assert "adapter_model.safetensors" in ok("show", "acme/flow").stdout
    assert [v["version"] for v in js("versions", "acme/flow")] == ["1.0.0"]
    assert "1.0.0" in ok("versions", "acme/flow").stdout
    pulled = js("pull", "acme/flow")
    assert folder_bytes(type(folder)(pulled["path"])) == folder_bytes(folder)
    assert ok("pull", "acme/flow@1.0.0").stdout.strip() == pulled["path"]


def test_push_of_a_plain_peft_folder_infers_metadata(online, tmp_path):
    folder = make_adapter(tmp_path / "peft", card=False, base_model="HuggingFaceTB/SmolLM2-135M", method="IA3")
    ok("push", folder, "acme/plain-peft@0.1.0")
    shown = js("show", "acme/plain-peft")
    assert (shown["method"], shown["base_model"]) == ("ia3", "HuggingFaceTB/SmolLM2-135M")


def test_push_uploads_only_the_blobs_the_registry_lacks(online, tmp_path, monkeypatch):
    folder = make_adapter(tmp_path / "a", seed=2, base_model="dedup/base")  # every file new
    with proxy(online.url) as p:
        monkeypatch.setenv("ADAPTERHUB_URL", p.url)
        ok("push", folder, "acme/dedup", "--version", "1.0.0")
        first = [path for method, path, _ in p.requests if method == "PUT"]
        (folder / "README.md").write_text("card")
        ok("push", folder, "acme/dedup", "--version", "1.0.1")
        second = [path for method, path, _ in p.requests if method == "PUT"][len(first):]
    assert len(first) == 3
    assert second == [f"/api/v1/blobs/{sha256(b'card')}"]


def test_push_refuses_symlinks(online, tmp_path):
    folder = make_adapter(tmp_path / "a")
    (folder / "evil").symlink_to("/etc/passwd")
    result = run("push", folder, "acme/sym", "--version", "1.0.0")
    assert result.exit_code == 1
    assert "symlinks are not allowed in an adapter folder" in result.output


def test_push_of_an_existing_version_is_refused(online, tmp_path):
    folder = make_adapter(tmp_path / "a")
    ok("push", folder, "acme/twice", "--version", "1.0.0")
    result = run("push", folder, "acme/twice", "--version", "1.0.0")
    assert result.exit_code == 1 and "[VersionExists]" in result.output


def test_alias_set_ls_rm_and_pull_follows_the_move(online, tmp_path):
    ok("push", make_adapter(tmp_path / "a", seed=3), "acme/moving", "--version", "1.0.0", "--alias", "stable")
    ok("push", make_adapter(tmp_path / "b", seed=4), "acme/moving", "--version", "1.1.0")
    assert js("pull", "acme/moving:stable")["version"] == "1.0.0"
    assert js("alias", "set", "acme/moving", "stable", "1.1.0") == {"alias": "stable", "version": "1.1.0"}
    ok("alias", "set", "acme/moving", "canary", "1.0.0")
    assert js("alias", "ls", "acme/moving") == {"stable": "1.1.0", "canary": "1.0.0"}
    assert "canary" in ok("alias", "ls", "acme/moving").stdout
    pulled = js("pull", "acme/moving:stable")
    assert pulled["version"] == "1.1.0"
    assert folder_bytes(type(tmp_path)(pulled["path"])) == folder_bytes(tmp_path / "b")
    ok("alias", "rm", "acme/moving", "canary")
    assert js("alias", "ls", "acme/moving") == {"stable": "1.1.0"}
    result = run("pull", "acme/moving:canary")
    assert result.exit_code == 1 and result.output.startswith("Error: not found:")


def test_yank_hides_a_version_from_resolution(online, tmp_path):
    ok("push", make_adapter(tmp_path / "a", seed=5), "acme/yanky", "--version", "1.0.0")
    ok("push", make_adapter(tmp_path / "b", seed=6), "acme/yanky", "--version", "1.0.1")
    ok("yank", "acme/yanky@1.0.1", "--reason", "wrong labels")
    rows = {v["version"]: v for v in js("versions", "acme/yanky")}
    assert rows["1.0.1"]["yanked"] and rows["1.0.1"]["yank_reason"] == "wrong labels"
    assert js("pull", "acme/yanky")["version"] == "1.0.0"
    result = run("yank", "acme/yanky", "--reason", "x")
    assert result.exit_code == 1 and "needs an exact version" in result.output


def test_unknown_reference_suggests_close_names(online, tmp_path):
    ok("push", make_adapter(tmp_path / "a"), "acme/sentiment-news", "--version", "1.0.0")
    result = run("show", "acme/sentiment-nwes")
    assert result.exit_code == 1
    assert result.output.startswith("Error: not found:")
    assert "did you mean acme/sentiment-news?" in result.output


def test_evaluations_posted_through_the_client_show_up(online, tmp_path):
    ok("push", make_adapter(tmp_path / "a"), "acme/evald", "--version", "1.0.0", "--alias", "stable")
    with Hub() as hub:
        res = hub.resolve("acme/evald:stable", key="tenant-1")
        assert (res.version, res.arm, res.rollout_id) == ("1.0.0", "stable", None) and len(res.commit) == 40
        ev = hub.post_eval("acme/evald", "tweets", sha256(b"data"), {"accuracy": 0.91})
        assert ev["version"] == "1.0.0" and ev["metrics"] == {"accuracy": 0.91}
    shown = js("show", "acme/evald")
    assert shown["version"]["evaluations"][0]["metrics"] == {"accuracy": 0.91}
    assert "accuracy=0.91" in ok("show", "acme/evald").stdout


@pytest.mark.parametrize("args", [["show", "acme/evald@9.9.9"], ["versions", "ghost/none"], ["pull", "acme/none"]])
def test_missing_things_exit_1_with_one_line(online, args):
    result = run(*args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: not found:") and result.output.count("\n") == 1


def test_pulling_a_yanked_version_by_number_warns_in_one_line(online, tmp_path):
    ok("push", make_adapter(tmp_path / "a", seed=7), "acme/yanked-pin", "--version", "1.0.0")
    ok("yank", "acme/yanked-pin@1.0.0", "--reason", "leaks labels")
    result = ok("pull", "acme/yanked-pin@1.0.0")
    assert "warning: acme/yanked-pin@1.0.0 is yanked: leaks labels\n" in result.stderr
    assert result.stdout.strip().endswith("snapshots/1.0.0")
