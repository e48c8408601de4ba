"""The committed seed adapters: each card agrees with its files, and a recorded metric reproduces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from adapterhub import format as fmt
from adapterhub.compose.folder import keys
from adapterhub.compose.workflows.catalog import CATALOGUE

ROOT = Path(__file__).resolve().parents[2] / "seed_adapters"
FOLDERS = sorted(p for p in ROOT.iterdir() if (p / fmt.CONFIG_FILE).is_file())
RECIPES = sorted(p for p in ROOT.iterdir() if (p / "composition.json").is_file())
REQUIRED = ("name", "method", "base_model", "task", "data", "recipe", "seed", "metrics", "training")


def test_there_are_seeds_and_they_stay_small():
    assert FOLDERS, "no seed adapters committed"
    assert RECIPES, "no composition recipe committed"
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total < 20 * 1024 * 1024


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_card_matches_files(folder):
    card = json.loads((folder / fmt.CARD_FILE).read_text())
    missing = [k for k in REQUIRED if k not in card]
    assert not missing, f"{folder.name}: card lacks {missing}"
    assert card["name"] == folder.name
    assert card["base_model"]["name_or_path"] in CATALOGUE
    for split in ("train", "test"):
        assert len(card["data"][split]["sha256"]) == 64 and card["data"][split]["examples"] > 0
    assert card["data"]["train"]["sha256"] != card["data"]["test"]["sha256"]
    readme = (folder / "README.md").read_text()
    assert readme.startswith("---\n") and f"\n---\n# {folder.name}\n" in readme  # front matter, then the title
    header = fmt.check_safetensors_file(folder / fmt.WEIGHTS_FILE)
    n_params = sum(_numel(v["shape"]) for k, v in header.items() if k != "__metadata__")
    assert n_params == card["saved_parameters"]
    # one count of what trains, the same at the top and under training (LoRA-FA saves its frozen A too)
    assert card["trainable_parameters"] == card["training"]["trainable_parameters"]
    frozen = sum(_numel(v["shape"]) for k, v in header.items() if ".lora_A." in k)
    assert card["trainable_parameters"] == n_params - (frozen if card["recipe"]["method"] == "lora_fa" else 0)
    shapes = card["base_model"]["fingerprint"]["shapes"]
    with safe_open(str(folder / fmt.WEIGHTS_FILE), "pt") as f:
        for key in f.keys():
            site = key.removeprefix(keys.PREFIX).rsplit(".", 2)[0]
            if key.endswith("lora_A.weight"):
                assert f.get_slice(key).get_shape()[1] == shapes[site][1], key  # A: (r, in)
            if key.endswith("lora_B.weight"):
                assert f.get_slice(key).get_shape()[0] == shapes[site][0], key  # B: (out, r)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_names_the_committed_seeds_it_composes(recipe):
    """A recipe's copies of its adapters are the seeds themselves (same bytes), each with the
    reference it is published under, and its trained layers sit beside them."""
    spec = json.loads((recipe / "composition.json").read_text())
    card = json.loads((recipe / fmt.CARD_FILE).read_text())
    assert spec["name"] == card["name"] == recipe.name and card["composition"] == spec["composition"]
    for name, entry in spec["adapters"].items():
        assert entry["reference"] == f"adapterhub/{name}@1.0.0"
        for f in (fmt.CONFIG_FILE, fmt.WEIGHTS_FILE):
            assert (recipe / entry["folder"] / f).read_bytes() == (ROOT / name / f).read_bytes(), (name, f)
    layers = [e["folder"] for e in spec.get("fusions", []) + spec.get("routers", [])]
    assert layers and all((recipe / f / fmt.WEIGHTS_FILE).is_file() for f in layers)
    for extra in card["evaluations"]:
        assert len(extra["sha256"]) == 64 and extra["metrics"]
    assert card["data"]["train"]["sha256"] != card["data"]["test"]["sha256"]


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


