"""The CLI without a registry: help, usage errors, one-line failures, login storage, the cache."""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner

from adapterhub.cli.main import cli
from adapterhub.registry import config
from adapterhub.registry.cache import Cache
from tests.client.support import sha256

IDENTITY_COMMANDS = [["namespace", "create"], ["namespace", "list"], ["namespace", "show"], ["user", "create"],
                     ["user", "list"], ["token", "create"], ["token", "list"], ["token", "revoke"]]
COMMANDS = [[], ["up"], ["serve"], ["login"], ["logout"], ["whoami"], ["push"], ["pull"], ["search"], ["show"],
            ["versions"], ["yank"], ["alias"], ["alias", "set"], ["alias", "rm"], ["alias", "ls"], ["cache"],
            ["cache", "ls"], ["cache", "prune"], ["namespace"], ["user"], ["token"], *IDENTITY_COMMANDS]
DATA_COMMANDS = [["whoami"], ["push"], ["pull"], ["search"], ["show"], ["versions"], ["yank"], ["alias", "set"],
                 ["alias", "ls"], ["cache", "ls"], ["cache", "prune"], ["login"], *IDENTITY_COMMANDS]


def run(*args, **kwargs):
    return CliRunner().invoke(cli, list(args), **kwargs)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help_with_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "adapterhub " in result.output


@pytest.mark.parametrize("command", DATA_COMMANDS, ids=" ".join)
def test_every_data_command_offers_json(command):
    assert "--json" in run(*command, "--help").output


def test_root_help_documents_shell_completion():
    assert "_ADAPTERHUB_COMPLETE=bash_source adapterhub" in run("--help").output


def test_usage_errors_exit_2():
    assert run("pull").exit_code == 2
    assert run("push", "/nonexistent", "a/b").exit_code == 2
    assert run("search", "--limit", "0").exit_code == 2
    assert run("frobnicate").exit_code == 2


def test_bad_reference_is_one_line_and_exit_1():
    result = run("pull", "Acme/X")
    assert result.exit_code == 1
    assert result.output == "Error: invalid namespace 'Acme': use 1-96 characters from [a-z0-9._-], " \
                            "starting with a letter or digit\n"


def test_server_down_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        result = run("--url", url, "search")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot reach the registry at {url} (")
    assert result.output.count("\n") == 1


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_DEBUG", "1")
    result = run("pull", "Acme/X")
    assert result.exit_code == 1 and type(result.exception).__name__ == "InvalidReferenceError"


def test_offline_pull_of_uncached_reference_fails_clearly(monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    result = run("pull", "acme/senti:stable")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ADAPTERHUB_OFFLINE=1 and acme/senti:stable is not in the local cache")


def test_logout_forgets_the_stored_token():
    config.store_token("ah_x")
    result = run("logout")
    assert result.exit_code == 0 and "removed" in result.output
    assert config.read_token() is None
    assert "nothing to do" in run("logout").output


def test_login_with_server_down_stores_nothing():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        result = run("--url", f"http://127.0.0.1:{s.getsockname()[1]}", "login", input="ah_secret\n")
    assert result.exit_code == 1 and "ah_secret" not in result.output
    assert config.read_token() is None


def _cached(home, versions: dict[str, bytes], ref: tuple[str, str]) -> Cache:
    cache = Cache(home / "cache")
    blobs = cache.repo_dir("acme", "senti") / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for version, data in versions.items():
        (blobs / sha256(data)).write_bytes(data)
        cache.build_snapshot("acme", "senti", {"version": version, "files": [
            {"path": "adapter_model.safetensors", "sha256": sha256(data), "size": len(data)}]})
    cache.write_ref("acme", "senti", *ref)
    return cache


def test_cache_ls_and_prune(isolated_home):
    _cached(isolated_home, {"1.0.0": b"a" * 2048, "1.1.0": b"b" * 4096}, ("stable", "1.1.0"))
    listed = json.loads(run("cache", "ls", "--json").stdout)
    assert [(r["adapter"], r["versions"], r["refs"]) for r in listed] == [
        ("acme/senti", ["1.0.0", "1.1.0"], {"stable": "1.1.0"})]
    assert "acme/senti" in run("cache", "ls").output
    result = run("cache", "prune")
    assert result.exit_code == 0
    assert "removed 1 snapshot(s) and 1 blob(s), freed 2.0 KiB" in result.output
    assert json.loads(run("cache", "prune", "--json").stdout) == {"snapshots": [], "blobs": 0, "freed": 0}


def test_offline_pull_answers_from_the_cache(isolated_home, monkeypatch):
    _cached(isolated_home, {"1.0.0": b"a" * 10}, ("stable", "1.0.0"))
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    result = run("pull", "acme/senti:stable", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["version"] == "1.0.0" and out["path"].endswith("adapters--acme--senti/snapshots/1.0.0")
    assert run("pull", "acme/senti:canary").exit_code == 1
