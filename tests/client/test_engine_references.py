"""The engine's one door to the hub: `load_adapter("ns/name:stable")` and recipes naming references."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import adapterhub as ah
from adapterhub.registry.client import Hub
from tests.helpers.tiny import batch, build

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module


def _logits(model):
    ids, mask = batch()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def test_load_adapter_by_alias_and_version_through_the_registry(online, tmp_path):
    model = ah.AdapterModel(build("llama-causal"))
    model.add_adapter("a", ah.LoRAConfig(r=2, init_lora_weights=False), set_active=True)
    expected = _logits(model)
    folder = model.save_adapter("a", tmp_path / "a")
    Hub().push(folder, "acme/engine-lora", version="1.0.0", alias="stable")

    fresh = ah.AdapterModel(build("llama-causal"))
    name = fresh.load_adapter("acme/engine-lora:stable", set_active=True)
    torch.testing.assert_close(_logits(fresh), expected, atol=0, rtol=0)
    other = fresh.load_adapter("acme/engine-lora@1.0.0", name="pinned")
    assert (name, other) == ("a", "pinned")


def test_recipe_pulls_every_adapter_it_names(online, tmp_path):
    source = ah.AdapterModel(build("llama-causal"))
    for i, name in enumerate(("x", "y")):
        source.add_adapter(name, ah.LoRAConfig(r=2, init_lora_weights=False))
        Hub().push(source.save_adapter(name, tmp_path / name), f"acme/recipe-{name}", version=f"1.0.{i}")
    model = ah.AdapterModel(build("llama-causal"))
    model.load_adapter("acme/recipe-x", name="x")
    model.load_adapter("acme/recipe-y", name="y")
    recipe = model.save_composition(tmp_path / "recipe", ah.Stack("x", "y"))
    model.set_active(ah.Stack("x", "y"))
    expected = _logits(model)
    manifest = json.loads((recipe / "composition.json").read_text())
    assert {a["reference"] for a in manifest["adapters"].values()} == {"acme/recipe-x", "acme/recipe-y"}
    for name in ("x", "y"):  # keep only the references: the adapters must come from the registry
        shutil.rmtree(recipe / manifest["adapters"][name]["folder"])
        assert not (recipe / manifest["adapters"][name]["folder"]).exists()

    fresh = ah.AdapterModel(build("llama-causal"))
    fresh.load_composition(recipe, set_active=True)
    torch.testing.assert_close(_logits(fresh), expected, atol=1e-6, rtol=0)
