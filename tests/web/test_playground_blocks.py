"""The playground's Fuse and Route modes (fresh layers, a fusion folder by reference, a recipe folder)
and their heatmaps, through AppTest against a registry of their own on 127.0.0.1.

The registry here is separate from ``hubdata``'s so that its extra adapters do not change what the
Browse tests count. Expected heatmap numbers come from the engine itself, loaded the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from adapterhub.compose.composition.blocks import Fuse, Route
from adapterhub.registry.client import Hub
from adapterhub.web import engine, views
from tests.client.support import live_registry
from tests.web.conftest import app, reviews

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

TEXT = "the film was really good"


@dataclass
class Blocks:
    url: str
    token: str
    base: Path  # the tiny BERT classifier
    lm_base: Path  # the tiny LLaMA
    sent_a: Path
    sent_b: Path
    fusion: Path  # a fusion folder over (a, b), pushed as acme/sent-fusion
    recipe: Path  # a Route recipe over two LM adapters, with its own adapter folders


def _second_classifier(hubdata, root: Path) -> Path:
    """Another LoRA on the tiny BERT, from other data and another seed, so that it differs from tiny-sent."""
    from adapterhub.compose.workflows.training import train

    data = root / "reviews-b.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in reviews(32, seed=7)))
    train(hubdata.base, data, "lora", root / "sent-b", progress=False, device="cpu", steps=20, lr=5e-2,
          batch_size=16, r=4, alpha=8, seed=3)
    return root / "sent-b"


def _moved_layers(model, attr: str) -> None:
    """Draw the block layers' weights at random (seeded), as training would move them off their fresh state."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if f".{attr}." in name and not name.endswith(".value.weight"):
                param.normal_(0.0, 1.0)


def _fusion_folder(hubdata, sent_b: Path, out: Path) -> Path:
    from adapterhub.compose.core.model import AdapterModel
    from adapterhub.compose.workflows.base import load_base, load_tokenizer

    model = AdapterModel(load_base(hubdata.base, "classification", ["neg", "pos"],
                                   tokenizer=load_tokenizer(hubdata.base)))
    model.load_adapter(hubdata.home / "tiny-sent", name="a")
    model.load_adapter(sent_b, name="b")
    model.add_fusion(Fuse("a", "b"))
    _moved_layers(model, "ah_fusions")
    return model.save_fusion(Fuse("a", "b"), out)


def _route_recipe(hubdata, out: Path) -> Path:
    from adapterhub.compose.core.model import AdapterModel
    from adapterhub.compose.workflows.base import load_base, load_tokenizer

    model = AdapterModel(load_base(hubdata.lm_base, "lm", tokenizer=load_tokenizer(hubdata.lm_base)))
    model.load_adapter(hubdata.home / "tiny-lm", name="x")
    model.load_adapter(hubdata.home / "tiny-lm", name="y")
    model.add_router(Route("x", "y"))
    _moved_layers(model, "ah_routers")
    return model.save_composition(out, Route("x", "y"))


@pytest.fixture(scope="module")
def blocks(hubdata, tmp_path_factory) -> Blocks:
    root = tmp_path_factory.mktemp("blocks")
    sent_b = _second_classifier(hubdata, root)
    fusion = _fusion_folder(hubdata, sent_b, root / "fusion")
    recipe = _route_recipe(hubdata, root / "route-recipe")
    with live_registry(root / "registry", namespaces=("acme",)) as srv:
        with Hub(srv.url, srv.admin_token, cache_dir=root / "cache", progress=False) as hub:
            hub.push(hubdata.home / "tiny-sent", "acme/sent-a", version="1.0.0")
            hub.push(sent_b, "acme/sent-b", version="1.0.0")
            hub.push(hubdata.home / "tiny-lm", "acme/lm", version="1.0.0")
            hub.push(fusion, "acme/sent-fusion", version="1.0.0")
        yield Blocks(srv.url, srv.admin_token, hubdata.base, hubdata.lm_base, hubdata.home / "tiny-sent", sent_b,
                     fusion, recipe)


@pytest.fixture(autouse=True)
def isolated(blocks, ui_env):
    """Every test here gets this module's registry and a clean environment."""


def run(blocks: Blocks, base: Path, refs: str, mode: str, source: str = "", text: str = TEXT):
    at = app(blocks, "pages/playground.py")
    at.selectbox(key="pg_base").select("local folder ...").run()
    at.text_input(key="pg_base_path").input(str(base)).run()
    at.text_input(key="pg_refs").input(refs).run()
    at.radio(key="pg_mode").set_value(mode).run()
    if source:
        at.text_input(key="pg_source").input(source).run()
    at.text_area(key="pg_text").input(text).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def heatmaps(at) -> list:
    """The page's heatmap charts (rect marks; the probability bars are bar marks)."""
    return [c for c in at.get("vega_lite_chart") if '"rect"' in c.proto.spec]


def expected(base: Path, folders: dict[str, Path], mode: str, source: Path | None = None, text: str = TEXT) -> list:
    """The heatmap frames the engine gives for the same inputs, loaded afresh."""
    out = engine.predict(engine.load_playground(str(base), folders, source), text, mode)
    return [views.block_frame(entry) for entry in out["blocks"]]


def test_fuse_with_fresh_layers_attends_equally_and_says_it_is_untrained(blocks):
    at = run(blocks, blocks.base, "acme/sent-a, acme/sent-b", "fuse")
    assert not at.error, [e.value for e in at.error]
    assert "Untrained fusion" in at.warning[0].value
    assert at.subheader[0].value.startswith("Fusion weights")
    assert len(heatmaps(at)) == 1
    heat = at.dataframe[1].value  # [0]: the label probabilities
    assert list(heat.columns) == ["acme_sent_a", "acme_sent_b"]
    assert list(heat.index) == ["0.attention.self.query", "0.attention.self.value", "1.attention.self.query",
                                "1.attention.self.value"]
    assert (heat == 0.5).all().all()  # a fresh fusion is the plain average
    assert "composition: `Fuse('acme_sent_a', 'acme_sent_b', temperature=1.0)`" in at.caption[-1].value


def test_fuse_loads_a_trained_fusion_by_reference_and_shows_its_weights(blocks):
    at = run(blocks, blocks.base, "acme/sent-a, acme/sent-b", "fuse", source="acme/sent-fusion")
    assert not at.error, [e.value for e in at.error]
    assert not at.warning  # loaded layers are not labelled untrained
    heat = at.dataframe[1].value
    assert list(heat.columns) == ["a", "b"]  # the picked adapters take the fusion's names, in order
    (want,) = expected(blocks.base, {"a": blocks.sent_a, "b": blocks.sent_b}, "fuse", blocks.fusion)
    assert heat.round(4).equals(want.round(4))
    assert (heat.sum(axis=1).round(3) == 1).all() and (heat != 0.5).any().any()


def test_route_runs_a_recipe_folder_and_shows_the_share_of_tokens_per_expert(blocks):
    at = run(blocks, blocks.lm_base, "", "route", source=str(blocks.recipe), text="the film was")
    assert not at.error, [e.value for e in at.error]
    assert not at.warning
    assert at.subheader[0].value.startswith("Router choices") and len(heatmaps(at)) == 1
    assert len(at.code) == 2  # base and adapted generations
    heat = at.dataframe[0].value  # a language model shows no probability table
    (want,) = expected(blocks.lm_base, {}, "route", blocks.recipe, text="the film was")
    assert list(heat.columns) == ["x", "y"]
    assert heat.round(4).equals(want.round(4))
    assert (heat.sum(axis=1).round(3) == 1).all()


def test_route_with_a_fresh_router_is_labelled_untrained(blocks):
    at = run(blocks, blocks.base, "acme/sent-a, acme/sent-b", "route")
    assert not at.error, [e.value for e in at.error]
    assert "Untrained router" in at.warning[0].value
    heat = at.dataframe[1].value
    assert list(heat.columns) == ["acme_sent_a", "acme_sent_b"] and len(heat.index) == 4
    assert (heat.sum(axis=1).round(3) == 1).all()


def test_a_fusion_source_in_route_mode_is_one_readable_error(blocks):
    at = run(blocks, blocks.base, "acme/sent-a, acme/sent-b", "route", source=str(blocks.fusion))
    assert "has no Route block: choose its mode, or clear the source for a fresh Route" in at.error[0].value


def test_a_source_that_is_no_composition_is_one_readable_error(blocks):
    at = run(blocks, blocks.base, "acme/sent-a", "fuse", source="acme/sent-b")
    assert "is not a fusion, router or composition folder" in at.error[0].value
    assert "its peft_type is 'LORA'" in at.error[0].value


def test_a_fusion_folder_needs_as_many_adapters_as_it_combines(blocks):
    at = run(blocks, blocks.base, "acme/sent-a", "fuse", source="acme/sent-fusion")
    assert "combines 2 adapters (a, b) but 1 were picked: pick 2, in that order" in at.error[0].value
