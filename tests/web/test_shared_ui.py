"""A shared UI (ADAPTERHUB_UI_SHARED=1) keeps principals apart (audit finding D5): each token has its
own cache folder, and the Playground checks every reference typed, not only the first. Against a
registry of its own on 127.0.0.1 holding a private adapter."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from adapterhub.registry import config
from adapterhub.registry.client import Hub
from tests.client.support import live_registry, make_adapter
from tests.web.conftest import app

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """acme/alpha (public) and hidden/secret@1.0.0 in a private namespace, pushed by the admin."""
    root = tmp_path_factory.mktemp("shared-ui")
    with live_registry(root / "registry", namespaces=("acme",)) as srv:
        with Hub(srv.url, srv.admin_token, cache_dir=root / "cache", progress=False) as hub:
            hub.create_namespace("hidden", private=True)
            hub.push(make_adapter(root / "alpha", seed=1), "acme/alpha", version="1.0.0")
            hub.push(make_adapter(root / "secret", seed=2), "hidden/secret", version="1.0.0")
        yield SimpleNamespace(url=srv.url, token=srv.admin_token)


def _roots_script(url: str, tokens: list[str]) -> None:
    import streamlit as st

    from adapterhub.web import state

    for token in tokens:
        st.write(str(state._hub(url, token).cache.root))


def roots(url: str, tokens: list[str]) -> list[str]:
    at = AppTest.from_function(_roots_script, args=(url, tokens), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return [m.value for m in at.markdown]


def test_a_shared_ui_gives_each_token_its_own_cache_named_by_a_hash(ui_env, monkeypatch):
    url, tokens = "http://127.0.0.1:9", ["ah_alice_secret_token", "ah_bob_secret_token", ""]
    assert roots(url, tokens) == [str(config.cache_dir())] * 3  # a local UI is the CLI user's: one cache
    monkeypatch.setenv("ADAPTERHUB_UI_SHARED", "1")
    found = roots(url, tokens)
    assert len(set(found)) == 3
    assert all(Path(r).parent == config.home() / "ui-cache" for r in found)
    assert not any(t and t in r for t in tokens for r in found)  # never the token itself in a path
    assert roots(url, tokens[:1]) == found[:1]  # stable for one principal across sessions
    assert roots("http://127.0.0.1:10", tokens[:1]) != found[:1]  # and per registry


def test_the_playground_checks_every_reference_not_only_the_first(registry, ui_env, monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_UI_SHARED", "1")
    at = app(registry, "pages/playground.py", token="")  # an anonymous visitor
    at.text_input(key="pg_refs").input("acme/alpha, hidden/secret@1.0.0").run()
    assert not at.exception
    assert len(at.error) == 1 and "hidden/secret" in at.error[0].value, [e.value for e in at.error]
    assert not at.button  # the page stopped: nothing can be run, nothing was pulled
    assert not list((config.home() / "ui-cache").rglob("adapters--hidden--secret"))
    at = app(registry, "pages/playground.py")  # the admin may read both: no error
    at.text_input(key="pg_refs").input("acme/alpha, hidden/secret@1.0.0").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
