"""An adapter's README and card are shown as Markdown text, never as live HTML: a pushed README with
``<script>`` or an ``onerror`` handler must not reach the page as markup that a browser would run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from adapterhub.registry.client import Hub
from tests.client.support import live_registry, make_adapter
from tests.web.conftest import app

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
README = f"# Hostile card\n\nLooks harmless.\n\n{SCRIPT}\n\n{IMG}\n\n<div onmouseover=alert(3)>hover</div>\n"
DESCRIPTION = f"a card with {IMG} in its description"
LIVE_MARKUP = ("<script", "onerror", "onmouseover")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A registry of its own holding acme/hostile@1.0.0 with the README and description above."""
    root = tmp_path_factory.mktemp("hostile")
    folder = make_adapter(root / "adapter", seed=9)
    card = json.loads((folder / "adapterhub.json").read_text())
    (folder / "adapterhub.json").write_text(json.dumps({**card, "description": DESCRIPTION}))
    (folder / "README.md").write_text(README)
    with live_registry(root / "registry", namespaces=("acme",)) as srv:
        with Hub(srv.url, srv.admin_token, cache_dir=root / "cache", progress=False) as hub:
            hub.push(folder, "acme/hostile", version="1.0.0", alias="stable")
        yield SimpleNamespace(url=srv.url, token=srv.admin_token)


@pytest.fixture(autouse=True)
def isolated(hostile, ui_env):
    """Every test here gets this module's registry and a clean environment."""


def elements(block):
    """Every element under an AppTest block, depth first."""
    for child in getattr(block, "children", {}).values():
        yield child
        yield from elements(child)


def shown(at):
    return [e for root in (at.main, at.sidebar) for e in elements(root)]


def live_html(at) -> list[str]:
    """What the page hands the browser as markup: st.html, components, Markdown with HTML allowed."""
    return [str(getattr(e, "value", "") or getattr(e.proto, "srcdoc", "")) for e in shown(at)
            if e.type in ("html", "iframe", "components")
            or (e.type in ("markdown", "caption") and e.proto.allow_html)]


def inert_text(at) -> str:
    return "\n".join(str(e.value) for e in shown(at) if e.type in ("markdown", "caption") and not e.proto.allow_html)


def test_the_adapter_page_shows_a_hostile_readme_as_text_only(hostile):
    at = app(hostile, "pages/adapter.py", ref="acme/hostile")
    assert not at.error, [e.value for e in at.error]
    text = inert_text(at)
    assert "# Hostile card" in text and SCRIPT in text and IMG in text  # shown, as escaped Markdown text
    assert DESCRIPTION in text
    assert not [h for h in live_html(at) if any(m in h for m in LIVE_MARKUP)], live_html(at)


def test_browse_shows_a_hostile_description_as_text_only(hostile):
    at = app(hostile)
    assert DESCRIPTION in inert_text(at)
    assert not [h for h in live_html(at) if any(m in h for m in LIVE_MARKUP)], live_html(at)


def test_compare_shows_a_hostile_card_as_text_only(hostile):
    at = app(hostile, "pages/compare.py", ref="acme/hostile")
    assert not at.exception
    assert not [h for h in live_html(at) if any(m in h for m in LIVE_MARKUP)], live_html(at)
