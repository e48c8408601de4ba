"""The evaluation harness, the data loader and the training loop (compose/workflows/evaluate.py, data.py, training.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from adapterhub.compose.tuners.bottleneck.config import PRESETS as BN_PRESETS
from adapterhub.compose.workflows.data import DatasetError, load_dataset, load_examples
from adapterhub.compose.workflows.evaluate import (
    classification_metrics,
    evaluate,
    perplexity,
)
from adapterhub.compose.workflows.reproduce import evaluate_adapter
from adapterhub.compose.workflows.training import PRESETS, split_hyper, train
from adapterhub.errors import IncompatibleAdapterError, InvalidAdapterError
from tests.helpers.tiny import build

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "film", "was", "good", "bad", "very", "plot", "and", "music"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[SEP]")


def write(path, text: str):
    path.write_text(text)
    return path


# ---------------------------------------------------------------------- metrics
def test_confusion_matrix_accuracy_and_macro_f1_match_a_hand_computation():
    metrics, matrix = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 2], 3)
    assert matrix == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # F1 per class = 2tp / (2tp + fp + fn): 2/4, 4/5, 2/3
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_macro_f1_skips_a_class_absent_from_truth_and_predictions_but_scores_a_missed_one_zero():
    assert classification_metrics([0, 1], [0, 1], 3)[0]["macro_f1"] == 1.0
    metrics, _ = classification_metrics([0, 1, 2], [0, 1, 1], 3)
    assert metrics["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_perplexity_is_exp_of_the_token_weighted_mean_loss_computed_by_hand():
    torch.manual_seed(0)
    model, tok = build("llama-causal"), word_tokenizer()
    texts = ["the film was good", "bad plot", "the music was very very good and the plot was bad"]
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:  # one unpadded sequence at a time: the model's loss is the mean over n-1 tokens
            ids = torch.tensor([tok(text)["input_ids"]])
            nll += float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
            tokens += ids.shape[1] - 1
    dataset = load_examples([{"text": t} for t in texts])
    for batch_size in (1, 3):  # padding must not change the number
        result = evaluate(model, tok, dataset, batch_size=batch_size, progress=False)
        assert result.n_tokens == tokens
        assert result.metrics["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-5)
    assert perplexity(nll, tokens) == pytest.approx(math.exp(nll / tokens))


def test_classification_eval_is_deterministic_and_names_its_data():
    model, tok = build("bert-seqcls"), word_tokenizer()
    dataset = load_examples([{"text": t, "label": lab} for t, lab in
                             [("good film", "a"), ("bad plot", "b"), ("the music", "c"), ("very good", "a")] * 3])
    first = evaluate(model, tok, dataset, batch_size=5, progress=False)
    again = evaluate(model, tok, dataset, batch_size=2, progress=False)
    assert first == again
    assert first.n_examples == 12 and first.dataset_sha256 == dataset.sha256 and first.labels == ["a", "b", "c"]
    assert sum(map(sum, first.confusion_matrix)) == 12
    with pytest.raises(IncompatibleAdapterError, match="label 'c' is not one the model predicts"):
        evaluate(model, tok, dataset, labels=["a", "b", "x"], progress=False)


# ---------------------------------------------------------------------- data files
def test_jsonl_and_csv_with_the_same_examples_share_one_sha256(tmp_path):
    a = load_dataset(write(tmp_path / "d.jsonl", '{"text": "good film", "label": 1}\n\n{"label": 0, "text": "bad, \\"plot\\""}\n'))
    b = load_dataset(write(tmp_path / "d.csv", 'text,label\ngood film,1\n"bad, ""plot""",0\n'))
    assert a.sha256 == b.sha256 and a.labels == ("0", "1") and a.task == "classification" and len(a) == 2
    lm = load_dataset(write(tmp_path / "lm.jsonl", '{"text": "good film"}\n'))
    assert lm.task == "lm" and lm.labels is None and lm.sha256 != a.sha256


def test_integer_labels_sort_as_numbers():
    rows = [{"text": "x", "label": n} for n in (10, 2, 1)]
    assert load_examples(rows).labels == ("1", "2", "10")


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"text": "ok", "label": "a"}\n{"text": "oops"\n', r"bad.jsonl:2: not valid JSON"),
    ("list.jsonl", '["text"]\n', r"list.jsonl:1: expected a JSON object, found list"),
    ("nolabel.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', r"nolabel.jsonl:2: missing 'label' column"),
    ("notext.csv", "label,body\nx,hello\n", r"notext.csv:2: missing or empty 'text' column \(found columns: label, body\)"),
    ("extra.csv", "text,label\na,b,c\n", r"extra.csv:2: more fields than the header has"),
    ("empty.jsonl", "\n", r"empty.jsonl: no examples"),
    ("data.txt", "hello\n", r"data.txt: unknown data format '.txt'; use .csv, .jsonl, .ndjson"),
])
def test_bad_data_is_refused_naming_the_file_and_line(tmp_path, name, content, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(write(tmp_path / name, content))


def test_missing_file_and_unknown_task_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="no such data file"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="unknown task 'ner'"):
        load_dataset(tmp_path / "nope.jsonl", task="ner")


# ---------------------------------------------------------------------- training
def test_training_options_are_sorted_into_settings_and_config_and_unknown_ones_refused():
    settings, config = split_hyper("houlsby", {"steps": 5, "reduction_factor": 4, "lr": None})
    assert settings["steps"] == 5 and settings["lr"] == PRESETS["houlsby"].lr
    assert config == {**BN_PRESETS["double_seq_bn"], "reduction_factor": 4}
    with pytest.raises(InvalidAdapterError, match="unknown option 'r' for method ia3"):
        split_hyper("ia3", {"r": 4})
    with pytest.raises(InvalidAdapterError, match="unknown method 'dora'"):
        split_hyper("dora", {})
    with pytest.raises(InvalidAdapterError, match="steps must be a positive integer"):
        split_hyper("lora", {"steps": 0})


def write_bases(root, rows: list[dict]):
    """Two tiny random bases (a BERT classifier, a Llama LM) and ``rows`` as cls.jsonl and lm.jsonl."""
    for arch in ("bert-seqcls", "llama-causal"):
        build(arch).save_pretrained(root / arch)
        word_tokenizer().save_pretrained(root / arch)
    write(root / "cls.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write(root / "lm.jsonl", "".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    rows = [{"text": f"the {w} was {'good' if i % 2 else 'bad'}", "label": "good" if i % 2 else "bad"}
            for i, w in enumerate(["film", "plot", "music"] * 4)]
    return write_bases(tmp_path_factory.mktemp("bases"), rows)


@pytest.mark.parametrize("method", list(PRESETS))
@pytest.mark.slow
def test_every_method_trains_a_classifier_whose_folder_reproduces_its_card(bases, tmp_path, method):
    data = bases / "cls.jsonl"
    result = train(bases / "bert-seqcls", data, method, tmp_path / method, eval_data=data, steps=3, batch_size=4,
                   progress=False, device="cpu")
    card = result.card
    assert card["recipe"]["method"] == method and card["labels"] == ["bad", "good"] and len(result.losses) == 3
    assert card["data"]["train"]["sha256"] == load_dataset(data).sha256
    again = evaluate_adapter(result.path, bases / "bert-seqcls", data, progress=False, device="cpu")
    assert again.metrics == pytest.approx(card["metrics"])  # the trained head is saved and restored with it


def test_a_language_model_adapter_records_perplexity(bases, tmp_path):
    result = train(bases / "llama-causal", bases / "lm.jsonl", "lora", tmp_path / "lm", eval_data=bases / "lm.jsonl",
                   steps=2, progress=False, device="cpu")
    assert result.card["task"] == "text-generation" and "labels" not in result.card
    again = evaluate_adapter(result.path, bases / "llama-causal", bases / "lm.jsonl", progress=False, device="cpu")
    assert again.metrics["perplexity"] == pytest.approx(result.metrics["perplexity"], rel=1e-5)


def test_training_is_deterministic_and_never_replaces_a_folder_that_is_not_an_adapter(bases, tmp_path):
    kwargs = dict(steps=2, batch_size=4, progress=False, device="cpu")
    a = train(bases / "bert-seqcls", bases / "cls.jsonl", "lora", tmp_path / "a", **kwargs)
    b = train(bases / "bert-seqcls", bases / "cls.jsonl", "lora", tmp_path / "b", name="a", **kwargs)
    assert (a.path / "adapter_model.safetensors").read_bytes() == (b.path / "adapter_model.safetensors").read_bytes()
    assert a.losses == b.losses
    train(bases / "bert-seqcls", bases / "cls.jsonl", "lora", tmp_path / "a", **kwargs)  # retraining in place is fine
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidAdapterError, match="exists and is not an adapter folder"):
        train(bases / "bert-seqcls", bases / "cls.jsonl", "lora", tmp_path / "mine", **kwargs)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_composition_recipe_is_evaluated_like_an_adapter(bases, tmp_path):
    """``adapterhub eval`` takes a recipe folder: its adapters and block, the head its adapters name."""
    import adapterhub as ah
    from adapterhub.compose.workflows.base import load_base, load_tokenizer

    data = bases / "cls.jsonl"
    kwargs = dict(steps=2, batch_size=4, progress=False, device="cpu")
    a = train(bases / "bert-seqcls", data, "lora", tmp_path / "a", **kwargs)
    b = train(bases / "bert-seqcls", data, "pfeiffer", tmp_path / "b", **kwargs)
    model = ah.AdapterModel(load_base(bases / "bert-seqcls", "classification", ["bad", "good"],
                                      tokenizer=load_tokenizer(bases / "bert-seqcls")))
    model.load_adapter(a.path, name="a")
    model.load_adapter(b.path, name="b")
    block = ah.Stack("a", "b")
    recipe = model.save_composition(tmp_path / "recipe", active=block, name="a_then_b")
    model.set_active(block)
    expected = evaluate(model, load_tokenizer(bases / "bert-seqcls"), load_dataset(data), labels=["bad", "good"],
                        progress=False)
    again = evaluate_adapter(recipe, bases / "bert-seqcls", data, progress=False, device="cpu")
    assert again.metrics == pytest.approx(expected.metrics) and again.labels == ["bad", "good"]
