"""A token the registry refuses (a stale ADAPTERHUB_TOKEN) browses anonymously for real: the sidebar
warns, and Browse lists the public adapters instead of showing the 401. Against a registry of its
own holding a public and a private adapter."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from adapterhub.registry.client import Hub
from tests.client.support import live_registry, make_adapter
from tests.web.conftest import app

STALE = "ah_0123456789abcdef_this-token-was-never-issued"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """acme/open (public) and vault/secret (private), pushed by the admin."""
    root = tmp_path_factory.mktemp("stale-token")
    with live_registry(root / "registry", namespaces=("acme",)) as srv:
        with Hub(srv.url, srv.admin_token, cache_dir=root / "cache", progress=False) as hub:
            hub.create_namespace("vault", private=True)
            hub.push(make_adapter(root / "open", seed=1), "acme/open", version="1.0.0")
            hub.push(make_adapter(root / "secret", seed=2), "vault/secret", version="1.0.0")
        yield SimpleNamespace(url=srv.url, token=srv.admin_token)


def _choice_script(url: str, tokens: list[str]) -> None:
    import streamlit as st

    from adapterhub.web import state

    st.session_state["url"] = url
    for held in tokens:
        st.session_state["token"] = held
        names = sorted(f"{a['namespace']}/{a['name']}" for a in state.search_page({})["items"])
        sent = state.hub()._http.headers.get("Authorization", "")
        st.write(f"{held or '-'}: reads with {state.read_token() or '-'}, sends {sent or '-'}, sees {names}")


def test_a_refused_token_reads_anonymously_and_a_good_one_keeps_its_reach(registry, ui_env):
    at = AppTest.from_function(_choice_script, args=(registry.url, [STALE, registry.token, ""]), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    assert [m.value for m in at.markdown] == [
        f"{STALE}: reads with -, sends -, sees ['acme/open']",
        f"{registry.token}: reads with {registry.token}, sends Bearer {registry.token}, "
        "sees ['acme/open', 'vault/secret']",
        "-: reads with -, sends -, sees ['acme/open']",
    ]


def test_an_unreachable_registry_keeps_the_token_so_the_page_names_the_real_problem(ui_env):
    at = AppTest.from_function(_choice_script, args=("http://127.0.0.1:9", [STALE]), default_timeout=30)
    at.run()
    assert at.exception and "cannot reach the registry at http://127.0.0.1:9" in at.exception[0].message


def test_browse_with_a_stale_token_warns_and_lists_the_public_adapters(registry, ui_env):
    at = app(registry, token=STALE)
    assert "does not accept this token" in at.sidebar.warning[0].value
    assert "browsing anonymously" in at.sidebar.warning[0].value
    assert not at.error
    cards = [m.value for m in at.main.markdown if m.value.startswith("**")]
    assert cards == ["**acme/open**"]
