"""Issue 16: every seed folder names its base by its Hugging Face Hub id, never a local path.

``adapter_config.json`` records the id as ``base_model_name_or_path`` (what PEFT and the Hub read),
the card as ``base_model.id``, and the README in the Hub's front matter; re-saving the metadata
never touches the weights.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from adapterhub import format as fmt
from adapterhub.compose.workflows.catalog import CATALOGUE, catalogue_entry
from adapterhub.vocab import task_named

ROOT = Path(__file__).resolve().parents[2] / "seed_adapters"
TOP = sorted(p for p in ROOT.iterdir() if (p / fmt.CARD_FILE).is_file())  # the seeds and the recipes
EVERY = sorted(p.parent for p in ROOT.rglob(fmt.CARD_FILE))  # with the adapter folders recipes carry
CONFIGS = sorted(ROOT.rglob(fmt.CONFIG_FILE))
HUB_IDS = {e.hub_id for e in CATALOGUE.values()}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _front_matter(folder: Path) -> tuple[dict, str]:
    text = (folder / fmt.README_FILE).read_text()
    assert text.startswith("---\n"), f"{folder.name}: the README has no front matter"
    head, sep, body = text[4:].partition("\n---\n")
    assert sep, f"{folder.name}: the front matter is not closed"
    meta = yaml.safe_load(head)
    assert isinstance(meta, dict)
    return meta, body


def _base_id(folder: Path) -> str:
    """The id a folder records: its adapter_config.json's, or (a recipe) its card's."""
    if (folder / fmt.CONFIG_FILE).is_file():
        return json.loads((folder / fmt.CONFIG_FILE).read_text())["base_model_name_or_path"]
    return json.loads((folder / fmt.CARD_FILE).read_text())["base_model"]["id"]


def test_the_seeds_are_all_here():
    assert len([p for p in TOP if (p / fmt.CONFIG_FILE).is_file()]) == 8
    assert [p.name for p in TOP if (p / fmt.RECIPE_FILE).is_file()] == ["smollm2-friends-news-route"]
    assert len(CONFIGS) >= 11  # 8 seeds, the router, the recipe's two copies


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_adapter_config_holds_an_absolute_path(path):
    """The issue's own check, ``grep -r '"/' seed_adapters/*/adapter_config.json``, over every config."""
    assert '"/' not in path.read_text()
    assert not [s for s in _strings(json.loads(path.read_text())) if Path(s).is_absolute() or s.startswith("~")]


@pytest.mark.parametrize("folder", EVERY, ids=lambda p: str(p.relative_to(ROOT)))
def test_metadata_names_the_base_by_its_catalogue_hub_id(folder):
    card = json.loads((folder / fmt.CARD_FILE).read_text())
    config_path = folder / fmt.CONFIG_FILE
    if config_path.is_file():
        assert json.loads(config_path.read_text())["base_model_name_or_path"] in HUB_IDS
    base = card["base_model"]
    assert base["id"] in HUB_IDS and base["id"] == _base_id(folder)
    assert catalogue_entry(base["name_or_path"]) is catalogue_entry(base["id"])  # the old field still agrees
    assert "fingerprint" in base
    for name in (fmt.CARD_FILE, fmt.README_FILE):  # no path of the machine that built it, anywhere
        text = (folder / name).read_text()
        assert "/tmp/" not in text and "site-packages" not in text and "/work/" not in text, name


@pytest.mark.parametrize("folder", EVERY, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_front_matter_is_the_hubs_model_card_metadata(folder):
    meta, body = _front_matter(folder)
    card = json.loads((folder / fmt.CARD_FILE).read_text())
    assert meta["base_model"] == _base_id(folder)
    assert meta["library_name"] == ("adapterhub" if card["method"] == "bottleneck" else "peft")  # PEFT has none
    assert meta["pipeline_tag"] == task_named(card["task"]).pipeline_tag
    assert isinstance(meta["tags"], list) and card["method"] in meta["tags"]
    assert body.startswith(f"# {folder.name}\n")  # the text that was there before follows


def _build_module():
    """``seed_adapters/build.py``, a script beside the data (not an installed module)."""
    name = "seed_build_for_tests"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "build.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up while they are built
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.parametrize("name", ["minilm-bbc-news-lora", "smollm2-friends-news-route"])
def test_resave_metadata_reproduces_the_committed_folder_from_the_old_one(tmp_path, name):
    """From a folder as it was before (local paths, no id, no front matter), the re-save gives
    exactly the committed bytes, weights untouched; and a second run changes nothing."""
    build = _build_module()
    seed = {s.name: s.base for s in build.SEEDS} | {"smollm2-friends-news-route": "smollm2-135m"}
    folder = tmp_path / name
    shutil.copytree(ROOT / name, folder)
    for card_path in folder.rglob(fmt.CARD_FILE):  # undo the id
        here = card_path.parent
        card = json.loads(card_path.read_text())
        card["base_model"].pop("id")
        fmt.write_json(card_path, card)
        readme = here / fmt.README_FILE
        readme.write_text(readme.read_text().split("\n---\n", 1)[1])
        if (here / fmt.CONFIG_FILE).is_file():
            config = json.loads((here / fmt.CONFIG_FILE).read_text())
            config["base_model_name_or_path"] = "/elsewhere/.venv/lib/python3.11/site-packages/some/model"
            fmt.write_json(here / fmt.CONFIG_FILE, config)
    build.resave_metadata(folder, seed[name])
    committed = {p.relative_to(ROOT / name): p.read_bytes() for p in (ROOT / name).rglob("*") if p.is_file()}
    resaved = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert resaved == committed
    build.resave_metadata(folder, seed[name])
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == committed


def test_resave_metadata_refuses_a_base_outside_the_catalogue(tmp_path):
    build = _build_module()
    shutil.copytree(ROOT / "minilm-bbc-news-lora", tmp_path / "a")
    with pytest.raises(ValueError, match="not a catalogue base model"):
        build.resave_metadata(tmp_path / "a", "acme/other-model")
