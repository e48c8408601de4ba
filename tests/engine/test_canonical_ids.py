"""Issue 16: a folder saved on a catalogue base names it by its Hugging Face Hub id, and the id
resolves back to the local catalogue folder (never a download).

The catalogue's own folders are faked where the real model is slow: a tiny LLaMA saved as
``ADAPTERHUB_HOME/models/smollm2-135m`` is, to the catalogue, the converted SmolLM2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import adapterhub as ah
from adapterhub import format as fmt
from adapterhub.compose.folder.save import recorded_base_id
from adapterhub.compose.workflows.base import base_folder, load_base
from adapterhub.compose.workflows.catalog import CATALOGUE, catalogue_entry, hub_id, resolve_base_model
from adapterhub.errors import AdapterHubError, AdapterNotFoundError
from tests.helpers.tiny import build

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def fake_smollm2(tmp_path, monkeypatch) -> Path:
    """A tiny LLaMA where the catalogue keeps the converted SmolLM2 (config.json there: no conversion)."""
    monkeypatch.setenv("ADAPTERHUB_HOME", str(tmp_path / "home"))
    folder = tmp_path / "home" / "models" / "smollm2-135m"
    build("llama-causal").save_pretrained(folder)
    return folder


def _front_matter(folder: Path) -> dict:
    text = (folder / fmt.README_FILE).read_text()
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    assert body.startswith("# ")
    return yaml.safe_load(head)


def test_catalogue_entries_have_hub_ids_and_keep_their_short_names():
    assert {n: e.hub_id for n, e in CATALOGUE.items()} == {"smollm2-135m": SMOL, "minilm-l6": MINILM}
    for name, entry in CATALOGUE.items():
        for spelling in (name, entry.hub_id, entry.hub_id.lower(), *entry.aliases):
            assert catalogue_entry(spelling) is entry, spelling
    assert catalogue_entry("acme/other-model") is None and catalogue_entry(None) is None
    assert catalogue_entry("") is None and hub_id("minilm-l6") == MINILM and hub_id("nope") is None


def test_catalogue_entry_knows_the_catalogues_own_folders(fake_smollm2, tmp_path):
    assert catalogue_entry(fake_smollm2) is CATALOGUE["smollm2-135m"]
    assert catalogue_entry(str(fake_smollm2) + "/") is CATALOGUE["smollm2-135m"]
    assert catalogue_entry(resolve_base_model("minilm-l6")) is CATALOGUE["minilm-l6"]  # the package folder
    other = tmp_path / "mine"
    build("llama-causal").save_pretrained(other)
    assert catalogue_entry(other) is None  # a folder of the user's own


def test_resolve_base_model_and_base_folder_accept_the_hub_id(fake_smollm2):
    assert resolve_base_model(MINILM) == resolve_base_model("minilm-l6")
    assert base_folder(MINILM) == base_folder("minilm-l6")
    assert resolve_base_model(SMOL, say=pytest.fail) == fake_smollm2  # already converted: nothing said, no download
    assert base_folder(SMOL) == base_folder("smollm2-135m") == fake_smollm2
    with pytest.raises(AdapterNotFoundError, match="catalogue name or id"):
        resolve_base_model("acme/other-model")
    with pytest.raises(AdapterHubError, match="catalogue name or id"):
        base_folder("acme/other-model")


def test_load_base_accepts_the_hub_id(fake_smollm2):
    model = load_base(SMOL)  # the task from the folder: a causal LM
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.hidden_size == 32


def _save(model, tmp_path, **kw) -> Path:
    model = ah.AdapterModel(model)
    model.add_adapter("a", ah.LoRAConfig(r=2))
    return model.save_adapter("a", tmp_path / "out", card={"task": "text-generation", "tags": ["t"]}, **kw)


def test_saving_on_a_catalogue_folder_writes_the_hub_id(fake_smollm2, tmp_path):
    folder = _save(load_base(fake_smollm2), tmp_path)
    config = json.loads((folder / fmt.CONFIG_FILE).read_text())
    card = json.loads((folder / fmt.CARD_FILE).read_text())
    assert config["base_model_name_or_path"] == SMOL
    assert card["base_model"]["id"] == SMOL and card["base_model"]["name_or_path"] == SMOL
    assert "fingerprint" in card["base_model"]
    meta = _front_matter(folder)
    assert meta == {"base_model": SMOL, "library_name": "peft", "pipeline_tag": "text-generation",
                    "tags": ["adapterhub", "lora", "t"]}
    assert str(fake_smollm2) not in (folder / fmt.README_FILE).read_text()
    # and it loads back onto the base the id names
    again = ah.AdapterModel(load_base(config["base_model_name_or_path"]))
    assert again.load_adapter(folder) == "a"


def test_a_folder_of_the_users_own_keeps_its_path_unless_told_the_id(tmp_path):
    mine = tmp_path / "mine"
    build("llama-causal").save_pretrained(mine)
    folder = _save(load_base(mine), tmp_path)
    assert json.loads((folder / fmt.CONFIG_FILE).read_text())["base_model_name_or_path"] == str(mine)
    assert "id" not in json.loads((folder / fmt.CARD_FILE).read_text())["base_model"]
    assert "base_model" not in _front_matter(folder) and _front_matter(folder)["library_name"] == "peft"
    told = _save(load_base(mine), tmp_path, base_model_id="acme/tiny-llama")
    assert json.loads((told / fmt.CONFIG_FILE).read_text())["base_model_name_or_path"] == "acme/tiny-llama"
    assert _front_matter(told)["base_model"] == "acme/tiny-llama"
    short = _save(load_base(mine), tmp_path, base_model_id="minilm-l6")  # a catalogue name becomes its id
    assert json.loads((short / fmt.CONFIG_FILE).read_text())["base_model_name_or_path"] == MINILM


def test_recorded_base_id_rules(tmp_path):
    model = build("llama-causal")
    assert recorded_base_id(model, None) is None  # built from a config: nothing to name
    model.config._name_or_path = "acme/tiny-llama"  # a Hub id, not a local path
    assert recorded_base_id(model, None) == "acme/tiny-llama"
    assert recorded_base_id(model, "smollm2-135m") == SMOL
    model.config._name_or_path = str(tmp_path)  # an existing local folder outside the catalogue
    assert recorded_base_id(model, str(tmp_path)) is None
    assert recorded_base_id(model, "/gone/from/this/machine") is None
    assert recorded_base_id(model, str(tmp_path), explicit="org/x") == "org/x"


@pytest.mark.slow
def test_saving_on_the_real_minilm_writes_its_id(tmp_path):
    model = ah.AdapterModel(load_base(MINILM, "classification", ["a", "b"]))
    model.add_adapter("c", ah.LoRAConfig(r=2, task_type="SEQ_CLS"))
    folder = model.save_adapter("c", tmp_path / "c", card={"task": "text-classification"})
    assert json.loads((folder / fmt.CONFIG_FILE).read_text())["base_model_name_or_path"] == MINILM
    assert _front_matter(folder)["base_model"] == MINILM
    assert _front_matter(folder)["pipeline_tag"] == "text-classification"
