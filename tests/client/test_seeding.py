"""`adapterhub seed`: seed folders land in the registry once, with their metrics as evaluations."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from adapterhub.cli.main import cli
from adapterhub.registry.client import Hub
from tests.client.support import make_adapter

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module


def _seed_root(tmp_path):
    root = tmp_path / "seeds"
    for i, name in enumerate(("topic-lora", "tweets-ia3")):
        folder = make_adapter(root / name, seed=i)
        card = json.loads((folder / "adapterhub.json").read_text())
        card["metrics"] = {"accuracy": 0.5 + i / 10, "macro_f1": 0.4}
        card["data"] = {"test": {"source": "bbc-news:test", "sha256": "ab" * 32, "examples": 100}}
        (folder / "adapterhub.json").write_text(json.dumps(card))
    (root / "notes").mkdir()  # not an adapter folder: ignored
    return root


def test_seed_publishes_each_folder_with_its_evaluation_once(online, tmp_path):
    root = _seed_root(tmp_path)
    runner = CliRunner()
    first = runner.invoke(cli, ["seed", "--from", str(root)])
    assert first.exit_code == 0, first.output
    assert "2 seed adapter(s) published" in first.output
    hub = Hub()
    shown = hub.show("adapterhub/tweets-ia3")
    assert hub.aliases("adapterhub/tweets-ia3") == {"stable": "1.0.0"}
    (evaluation,) = shown["version"]["evaluations"]
    assert evaluation["metrics"] == {"accuracy": 0.6, "macro_f1": 0.4}
    assert evaluation["dataset"] == "bbc-news:test" and evaluation["dataset_sha256"] == "ab" * 32
    again = runner.invoke(cli, ["seed", "--from", str(root)])
    assert again.exit_code == 0 and "already published" in again.output
    assert [v["version"] for v in hub.versions("adapterhub/topic-lora")] == ["1.0.0"]


def test_the_committed_seeds_publish_with_the_recipe_and_all_its_evaluations(online, tmp_path):
    """The real seed folders, the composition recipe with its nested expert folders included."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "seed_adapters"
    result = CliRunner().invoke(cli, ["seed", "--from", str(root)])
    assert result.exit_code == 0, result.output
    hub = Hub()
    recipe = "adapterhub/smollm2-friends-news-route"
    shown = hub.show(recipe)
    # each named by its protocol's data: "friends:test (seeded sample of 200, seed 0)"
    assert {e["dataset"].split(" ")[0] for e in shown["version"]["evaluations"]} == {"friends:test", "bbc-news:test"}
    assert all(e["protocol"] for e in shown["version"]["evaluations"])
    folder = hub.pull(recipe)
    spec = json.loads((folder / "composition.json").read_text())
    for name, entry in spec["adapters"].items():
        assert (folder / entry["folder"] / "adapter_model.safetensors").read_bytes() == \
            (root / name / "adapter_model.safetensors").read_bytes()
    assert (folder / "router-0" / "adapter_model.safetensors").is_file()
