"""The client without a server: folders, metadata, settings, error mapping, connection failures."""

from __future__ import annotations

import json
import os
import socket

import httpx
import pytest

from adapterhub.errors import (
    AdapterNotFoundError,
    AuthenticationError,
    InvalidAdapterError,
    InvalidReferenceError,
    OfflineError,
    RegistryError,
)
from adapterhub.format import scan_folder
from adapterhub.registry import config
from adapterhub.registry.client import Hub
from adapterhub.registry.folder import folder_metadata
from tests.client.support import make_adapter


def test_plain_peft_folder_metadata_is_inferred_from_adapter_config(tmp_path):
    folder = make_adapter(tmp_path / "a", card=False, base_model="HuggingFaceTB/SmolLM2-135M")
    assert folder_metadata(folder) == {"method": "lora", "task": "text-generation",
                                       "base_model": "HuggingFaceTB/SmolLM2-135M", "target_modules": ["q_proj", "v_proj"]}


def test_card_metadata_wins_over_adapter_config(tmp_path):
    folder = make_adapter(tmp_path / "a", base_model="tiny/base")
    meta = folder_metadata(folder)
    assert meta["base_model"] == "tiny/base" and meta["task"] == "text-classification"
    assert meta["tags"] == ["test"] and meta["target_modules"] == ["q_proj", "v_proj"]


def test_folder_without_config_or_card_is_refused(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(InvalidAdapterError, match="neither adapterhub.json nor adapter_config.json"):
        folder_metadata(tmp_path)


def test_malformed_adapter_config_names_the_file(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(InvalidAdapterError, match="adapter_config.json is not valid JSON"):
        folder_metadata(tmp_path)


def test_push_refuses_symlinks_inside_the_folder(tmp_path):
    folder = make_adapter(tmp_path / "a")
    (folder / "link.json").symlink_to(folder / "adapter_config.json")
    with pytest.raises(InvalidAdapterError, match="link.json: symlinks are not allowed"):
        scan_folder(folder)


def test_push_refuses_symlinked_subfolders(tmp_path):
    folder = make_adapter(tmp_path / "a")
    (folder / "sub").symlink_to(tmp_path)
    with pytest.raises(InvalidAdapterError, match="symlinks are not allowed"):
        scan_folder(folder)


def test_push_refuses_non_regular_files(tmp_path):
    folder = make_adapter(tmp_path / "a")
    os.mkfifo(folder / "pipe")
    with pytest.raises(InvalidAdapterError, match="pipe: not a regular file"):
        scan_folder(folder)


def test_scan_lists_nested_files_sorted(tmp_path):
    folder = make_adapter(tmp_path / "a")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.json").write_text("{}")
    assert [p.relative_to(folder).as_posix() for p in scan_folder(folder)] == [
        "adapter_config.json", "adapter_model.safetensors", "adapterhub.json", "sub/x.json"]


def test_push_needs_exactly_one_version(tmp_path):
    folder = make_adapter(tmp_path / "a")
    with Hub("http://127.0.0.1:9") as hub:
        with pytest.raises(InvalidReferenceError, match="needs a version"):
            hub.push(folder, "acme/x")
        with pytest.raises(InvalidReferenceError, match="names version 1.0.0 but 2.0.0 was given"):
            hub.push(folder, "acme/x@1.0.0", version="2.0.0")


def test_login_token_is_stored_private_and_used_by_default(isolated_home, monkeypatch):
    path = config.store_token("ah_secret")
    assert path == isolated_home / "token"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert Hub().token == "ah_secret"
    monkeypatch.setenv("ADAPTERHUB_TOKEN", "ah_env")
    assert Hub().token == "ah_env"
    assert Hub(token="ah_flag").token == "ah_flag"
    assert config.delete_token() and not config.delete_token()


def test_url_defaults_to_the_local_registry(monkeypatch):
    assert Hub().url == "http://127.0.0.1:8000"
    monkeypatch.setenv("ADAPTERHUB_URL", "http://hub.example:9000/")
    assert Hub().url == "http://hub.example:9000"


def test_home_follows_xdg_when_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("ADAPTERHUB_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == tmp_path / "xdg" / "adapterhub" / "cache"


def test_connection_failure_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with Hub(f"http://127.0.0.1:{port}") as hub, pytest.raises(RegistryError) as info:
            hub.search()
    assert f"cannot reach the registry at http://127.0.0.1:{port}" in str(info.value)
    assert info.value.code == "ConnectionError"


def test_offline_mode_refuses_network_calls(monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    with Hub() as hub, pytest.raises(OfflineError, match="ADAPTERHUB_OFFLINE=1: cannot reach"):
        hub.search("x")


def _answer(status: int, body: dict | str) -> httpx.Response:
    request = httpx.Request("GET", "http://hub/api/v1/adapters/acme/x")
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.Response(status, content=content.encode(), request=request)


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (404, {"detail": "adapter acme/x not found", "code": "RepoNotFound"}, AdapterNotFoundError,
         "adapter acme/x not found"),
        (401, {"detail": "missing token", "code": "Unauthorized"}, AuthenticationError,
         "missing token (run `adapterhub login` or set ADAPTERHUB_TOKEN)"),
        (403, {"detail": "no write scope on acme", "code": "Forbidden"}, AuthenticationError,
         "no write scope on acme"),
        (409, {"detail": "version 1.0.0 exists", "code": "VersionExists"}, RegistryError, "version 1.0.0 exists"),
        (422, {"detail": [{"loc": ["body", "version"], "msg": "bad"}]}, RegistryError, "body.version: bad"),
        (500, "oops", RegistryError, "500 Internal Server Error from http://hub/api/v1/adapters/acme/x"),
    ],
)
def test_http_errors_map_to_typed_errors_with_the_server_message(status, body, kind, message):
    with Hub("http://hub") as hub, pytest.raises(kind) as info:
        hub._check(_answer(status, body))
    assert str(info.value).startswith(message) or message in str(info.value)
    assert info.value.status == status
    assert info.value.code == (body.get("code") if isinstance(body, dict) else None)
