"""Recipes: a composition saved beside the adapters (and layers) it names, loaded back as it was."""

from __future__ import annotations

import json

import pytest
import torch

import adapterhub as ah
from tests.helpers.tiny import batch, build


def _model():
    model = ah.AdapterModel(build("llama-causal"))
    model.add_adapter("lang", ah.BottleneckConfig(init_weights=False))
    model.add_adapter("a", ah.LoRAConfig(r=4, init_lora_weights=False))
    model.add_adapter("b", ah.BottleneckConfig(init_weights=False))
    model.add_adapter("unused", ah.LoRAConfig(r=2))
    fuse = ah.Fuse("a", "b")
    model.add_fusion(fuse)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".ah_fusions." in n:
                p.add_(torch.randn_like(p) * 0.1)
    return model


RECIPE = ah.Stack("lang", ah.Fuse("a", "b"))


def _logits(model, ids, mask, **kw):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **kw).logits


def test_recipe_round_trips_into_a_fresh_model(tmp_path):
    model = _model()
    model.ah.sources["a"] = "acme/a@1.0.0"  # as if pulled from the registry
    model.add_composition("de_fused", RECIPE)
    model.set_active("de_fused")
    ids, mask = batch()
    expected = _logits(model, ids, mask)
    folder = model.save_composition(tmp_path / "recipe")
    recipe = json.loads((folder / "composition.json").read_text())
    assert recipe["name"] == "de_fused" and recipe["composition"] == RECIPE.to_dict()
    assert recipe["adapters"] == {
        "lang": {"folder": "lang", "reference": None},
        "a": {"folder": "a", "reference": "acme/a@1.0.0"},
        "b": {"folder": "b", "reference": None},
    }
    assert recipe["fusions"] == [{"folder": "fusion-0", "composition": ah.Fuse("a", "b").to_dict()}]
    assert sorted(p.name for p in folder.iterdir()) == ["a", "b", "composition.json", "fusion-0", "lang"]

    fresh = ah.AdapterModel(build("llama-causal"))
    block = fresh.load_composition(folder, set_active=True)
    assert block == RECIPE and fresh.compositions == {"de_fused": RECIPE}
    assert sorted(fresh.adapters) == ["a", "b", "lang"]
    torch.testing.assert_close(_logits(fresh, ids, mask), expected, atol=1e-5, rtol=0)
    fresh.set_active(None)
    per_row = _logits(fresh, ids, mask, adapter_names=["de_fused", None, "de_fused"])
    torch.testing.assert_close(per_row[0], expected[0], atol=1e-5, rtol=0)


def test_recipe_uses_adapters_already_loaded(tmp_path):
    model = _model()
    folder = model.save_composition(tmp_path / "r", active=ah.Stack("lang", "a"), name="plain")
    fresh = ah.AdapterModel(build("llama-causal"))
    fresh.load_adapter(folder / "a")
    fresh.load_composition(folder)
    assert sorted(fresh.adapters) == ["a", "lang"] and "plain" in fresh.compositions


def test_broken_recipe_leaves_nothing_attached(tmp_path):
    model = _model()
    folder = model.save_composition(tmp_path / "r", active=RECIPE)
    (folder / "fusion-0" / "adapter_model.safetensors").write_bytes(b"\x01\x02")
    fresh = ah.AdapterModel(build("llama-causal"))
    with pytest.raises(ah.InvalidAdapterError, match="is too short for a safetensors file"):
        fresh.load_composition(folder)
    assert fresh.adapters == {} and fresh.compositions == {}
    assert not any(".ah_" in k for k in fresh.state_dict())


def test_recipe_without_folder_or_reference_is_refused(tmp_path):
    model = _model()
    folder = model.save_composition(tmp_path / "r", active=ah.Stack("lang", "a"))
    import shutil

    shutil.rmtree(folder / "a")
    fresh = ah.AdapterModel(build("llama-causal"))
    with pytest.raises(ah.InvalidAdapterError, match="adapter 'a' has neither a folder nor a reference"):
        fresh.load_composition(folder)
    assert fresh.adapters == {}


def test_save_composition_needs_one():
    model = _model()
    with pytest.raises(ah.InvalidAdapterError, match="nothing to save"):
        model.save_composition("/tmp/never-written")


def test_a_recipe_keeps_what_its_classifiers_are_for(tmp_path):
    """Saving a loaded adapter again (as a recipe does) keeps its card's task and labels."""
    model = ah.AdapterModel(build("bert-seqcls"))
    model.add_adapter("topic", ah.LoRAConfig(r=4, task_type="SEQ_CLS"))
    card = {"task": "text-classification", "labels": ["a", "b", "c"], "description": "topics"}
    folder = model.save_adapter("topic", tmp_path / "topic", card=card)

    fresh = ah.AdapterModel(build("bert-seqcls"))
    fresh.load_adapter(folder, name="topic")
    fresh.add_adapter("other", ah.LoRAConfig(r=2, task_type="SEQ_CLS"))
    recipe = fresh.save_composition(tmp_path / "recipe", active=ah.Stack("topic", "other"))
    saved = json.loads((recipe / "topic" / "adapterhub.json").read_text())
    assert {k: saved[k] for k in card} == card
    assert "labels" not in json.loads((recipe / "other" / "adapterhub.json").read_text())
