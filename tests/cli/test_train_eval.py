"""`adapterhub train` and `adapterhub eval` through CliRunner, on a tiny random BERT saved to a folder,
then against a live registry: push -> eval --post -> the evaluation is visible in `show`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapterhub.cli.main import cli
from tests.helpers import tiny
from tests.helpers.tiny import build

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

FILLER = ["the", "film", "was", "a", "movie", "plot", "actor", "story", "really", "quite", "very", "and", "it",
          "long", "short", "music"]


def word_tokenizer():
    return tiny.word_tokenizer(FILLER + ["good", "bad"])


def reviews(n: int, seed: int) -> list[dict]:
    """Separable data: the label says whether the text contains "good" (else it contains "bad")."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        words = rng.sample(FILLER, 5)
        words.insert(rng.randrange(6), "good" if positive else "bad")
        rows.append({"text": " ".join(words), "label": "pos" if positive else "neg"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def js(*args):
    return json.loads(ok(*args, "--json").stdout)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-eval")
    base = root / "tiny-bert"
    build("bert-seqcls").save_pretrained(base)
    word_tokenizer().save_pretrained(base)
    return {"root": root, "base": base, "train": write_jsonl(root / "train.jsonl", reviews(200, seed=0)),
            "test": write_jsonl(root / "test.jsonl", reviews(100, seed=1))}


@pytest.fixture(scope="module")
def trained(work):
    out = work["root"] / "sentiment"
    summary = js("train", "--base", work["base"], "--data", work["train"], "--eval-data", work["test"],
                 "--method", "lora", "--r", "8", "--alpha", "16", "--steps", "60", "--lr", "1e-2", "--batch-size", "16", "--out", out)
    return out, summary


@pytest.mark.parametrize("command", ["train", "eval"])
def test_help_has_an_example_and_json(command):
    output = ok(command, "--help").output
    assert "Example" in output and f"adapterhub {command} " in output and "--json" in output


def test_usage_errors_exit_2(work):
    assert run("eval", work["base"], "--evaluation", "3").exit_code == 2  # --evaluation without --verify
    assert run("eval", work["base"], "--post").exit_code == 2  # --post of a folder
    assert run("train", "--base", work["base"], "--data", work["train"], "--out", "x", "--method", "dora").exit_code == 2


def test_cli_methods_match_the_engine():
    from adapterhub.compose.workflows.training import PRESETS
    from adapterhub.vocab import METHODS, TRAINING_PRESETS

    assert tuple(PRESETS) == tuple(TRAINING_PRESETS)
    assert all(PRESETS[p].config_cls.method == TRAINING_PRESETS[p] for p in PRESETS)
    assert set(TRAINING_PRESETS.values()) == set(METHODS)


def test_train_writes_a_folder_whose_card_records_data_recipe_and_metrics(work, trained):
    out, summary = trained
    assert summary["path"] == str(out) and summary["method"] == "lora" and summary["labels"] == ["neg", "pos"]
    card = json.loads((out / "adapterhub.json").read_text())
    assert card["task"] == "text-classification" and card["method"] == "lora"
    assert card["data"]["train"]["examples"] == 200 and len(card["data"]["train"]["sha256"]) == 64
    assert card["data"]["eval"]["source"] == "test.jsonl"
    assert card["recipe"]["steps"] == 60 and card["recipe"]["seed"] == 0 and card["recipe"]["config"] == {"r": 8, "alpha": 16.0}
    assert card["training"]["trainable_parameters"] > 0 and card["training"]["time_s"] > 0
    assert card["metrics"]["accuracy"] > 0.8, card["metrics"]
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"


def test_eval_of_the_folder_reproduces_the_card_on_held_out_data(work, trained):
    out, summary = trained
    result = js("eval", out, "--base", work["base"], "--data", work["test"])
    assert result["n_examples"] == 100 and result["task"] == "classification"
    assert result["metrics"] == pytest.approx(summary["metrics"])
    assert result["metrics"]["accuracy"] > 0.8
    assert sum(map(sum, result["confusion_matrix"])) == 100
    text = ok("eval", out, "--base", work["base"], "--data", work["test"]).stdout
    assert "accuracy" in text and "confusion matrix" in text


def test_train_names_the_file_and_line_of_bad_data(work, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good film", "label": "pos"}\n{"text": "bad film"}\n')
    result = run("train", "--base", work["base"], "--data", bad, "--out", tmp_path / "x", "--steps", "1")
    assert result.exit_code == 1
    assert result.output == f"Error: {bad}:2: missing 'label' column, which classification needs (found: text)\n"
    assert not (tmp_path / "x").exists()


def test_train_refuses_an_option_the_method_lacks(work, tmp_path):
    result = run("train", "--base", work["base"], "--data", work["train"], "--method", "ia3", "--r", "4",
                 "--out", tmp_path / "x")
    assert result.exit_code == 1 and "unknown option 'r' for method ia3" in result.output


def test_eval_post_needs_a_registry_reference(work, trained):
    result = run("eval", trained[0], "--base", work["base"], "--data", work["test"], "--post")
    assert result.exit_code == 2 and "give a registry reference" in result.output


def test_push_eval_post_then_show_lists_the_evaluation(online, work, trained):
    out, _ = trained
    ok("push", out, "acme/sentiment", "--version", "1.0.0", "--alias", "stable")
    result = js("eval", "acme/sentiment:stable", "--base", work["base"], "--data", work["test"], "--post")
    assert result["adapter"] == "acme/sentiment@1.0.0" and result["posted"]["version"] == "1.0.0"
    shown = js("show", "acme/sentiment@1.0.0")
    [evaluation] = shown["version"]["evaluations"]
    assert evaluation["dataset"] == "test.jsonl"
    assert evaluation["dataset_sha256"] == result["dataset_sha256"]
    assert evaluation["metrics"] == pytest.approx(result["metrics"])
    assert "test.jsonl" in ok("show", "acme/sentiment@1.0.0").stdout


def test_train_names_the_catalogue_for_an_unknown_base(work, tmp_path):
    result = run("train", "--base", tmp_path / "nowhere", "--data", work["train"], "--out", tmp_path / "x", "--steps", "1")
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'nowhere'}: not a local transformers model folder (no config.json) "
                             "nor a catalogue name or id (smollm2-135m, HuggingFaceTB/SmolLM2-135M-Instruct, minilm-l6, "
                             "sentence-transformers/all-MiniLM-L6-v2)\n")
    assert not (tmp_path / "x").exists()
