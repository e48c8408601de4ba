"""Evaluations by protocol (compose/workflows/reproduce.py, adapterhub/eval_protocol.py): defaults from
the card, overrides recorded, batch size without effect, constrained answers, and verification."""

from __future__ import annotations

import pytest

from adapterhub import format as fmt
from adapterhub.compose.workflows.data import load_examples
from adapterhub.compose.workflows.instruct import NEWS_TOPIC, as_instructions, constrained_answers
from adapterhub.compose.workflows.reproduce import evaluate_adapter, run_protocol, verify_card
from adapterhub.compose.workflows.training import train
from adapterhub.errors import InvalidAdapterError
from adapterhub.eval_protocol import (
    ARGMAX_HEAD,
    CONSTRAINED_ANSWER,
    TOKEN_NLL,
    DataRef,
    EvalProtocol,
    ProtocolError,
    card_results,
    same_figures,
)
from tests.engine.test_evaluate import word_tokenizer, write, write_bases
from tests.helpers.tiny import build

ROWS = [{"text": f"the {w} was {'good' if i % 2 else 'bad'} and {'very ' * (i % 4)}good", "label": "good" if i % 3 else "bad"}
        for i, w in enumerate(["film", "plot", "music"] * 7)]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return write_bases(tmp_path_factory.mktemp("bases"), ROWS)


@pytest.fixture(scope="module")
def classifier(bases, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapters") / "cls"
    return train(bases / "bert-seqcls", bases / "cls.jsonl", "lora", out, eval_data=bases / "cls.jsonl",
                 eval_sample=15, steps=4, batch_size=4, max_length=12, progress=False, device="cpu").path


def test_the_card_records_the_protocol_its_figures_were_scored_with(classifier, bases):
    card = fmt.read_json_object(classifier / fmt.CARD_FILE)
    [(protocol, recorded)] = card_results(card)
    assert protocol.scoring == ARGMAX_HEAD and protocol.max_length == 12 and protocol.batch_size == 4
    assert protocol.data == DataRef(str(bases / "cls.jsonl"), sample=15, sha256=recorded["data_sha256"], examples=15)
    assert protocol.labels == ("bad", "good") and set(protocol.software) == {"adapterhub", "torch", "transformers"}
    assert recorded["confusion_matrix"] == card["evaluation"]["confusion_matrix"]


def test_no_arguments_score_the_cards_protocol_and_reproduce_its_confusion_matrix(classifier):
    card = fmt.read_json_object(classifier / fmt.CARD_FILE)
    result = evaluate_adapter(classifier, progress=False, device="cpu")
    assert result.confusion_matrix == card["evaluation"]["confusion_matrix"]
    assert result.n_examples == 15 and "overrides" not in result.protocol
    assert result.protocol["data"]["sha256"] == card["evaluation"]["protocol"]["data"]["sha256"]
    [check] = verify_card(classifier, progress=False, device="cpu")
    assert check.reproduced and check.differences == []


def test_an_argument_that_differs_from_the_card_is_recorded_as_an_override(classifier, bases):
    result = evaluate_adapter(classifier, max_length=6, sample=10, progress=False, device="cpu")
    assert result.protocol["overrides"] == {"max_length": {"card": 12, "used": 6}, "sample": {"card": 15, "used": 10}}
    assert result.n_examples == 10
    same = evaluate_adapter(classifier, data=bases / "cls.jsonl", progress=False, device="cpu")
    assert same.n_examples == 15 and "overrides" not in same.protocol  # the card's own data: its protocol
    copy = write(bases.parent / "other.jsonl", (bases / "cls.jsonl").read_text())
    other = evaluate_adapter(classifier, data=copy, progress=False, device="cpu")
    assert other.n_examples == len(ROWS)  # other data: the card's sample does not apply to it
    assert other.protocol["overrides"]["data"]["used"] == str(copy)


def test_verification_names_what_moved_when_the_record_is_not_reproduced(classifier, tmp_path):
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(classifier, tampered)
    card = fmt.read_json_object(tampered / fmt.CARD_FILE)
    matrix = card["evaluation"]["confusion_matrix"]
    matrix[0][0], matrix[0][1] = matrix[0][0] - 1, matrix[0][1] + 1
    fmt.write_json(tampered / fmt.CARD_FILE, card)
    [check] = verify_card(tampered, progress=False, device="cpu")
    assert not check.reproduced
    assert "1 predictions moved" in check.differences[0] and "(0,0)" in check.differences[0]


@pytest.mark.parametrize("scoring", [ARGMAX_HEAD, TOKEN_NLL, CONSTRAINED_ANSWER])
def test_batch_size_does_not_change_the_figures(bases, tmp_path, scoring):
    if scoring == ARGMAX_HEAD:
        folder = train(bases / "bert-seqcls", bases / "cls.jsonl", "lora", tmp_path / "a", steps=2, batch_size=4,
                       progress=False, device="cpu").path
        base, labels, template = bases / "bert-seqcls", ("bad", "good"), None
    else:
        data = bases / "lm.jsonl"
        if scoring == CONSTRAINED_ANSWER:
            data = as_instructions(load_examples(ROWS), ["bad", "good"], NEWS_TOPIC)
        folder = train(bases / "llama-causal", data, "lora", tmp_path / "a", steps=2, batch_size=4,
                       progress=False, device="cpu").path
        base, labels = bases / "llama-causal", ("bad", "good") if scoring == CONSTRAINED_ANSWER else None
        template = NEWS_TOPIC if scoring == CONSTRAINED_ANSWER else None
    data_file = bases / ("lm.jsonl" if scoring == TOKEN_NLL else "cls.jsonl")
    runs = []
    for batch_size in (1, 16):
        protocol = EvalProtocol(task="lm" if scoring == TOKEN_NLL else "classification", scoring=scoring,
                                data=DataRef(str(data_file)), labels=labels, max_length=24, batch_size=batch_size,
                                template=template, base=str(base))
        runs.append(run_protocol(folder, protocol, progress=False, device="cpu"))
    one, sixteen = runs
    assert one.dataset_sha256 == sixteen.dataset_sha256
    if scoring == TOKEN_NLL:
        assert one.n_tokens == sixteen.n_tokens
        assert one.metrics["perplexity"] == pytest.approx(sixteen.metrics["perplexity"], rel=1e-6)
    else:
        assert one.confusion_matrix == sixteen.confusion_matrix


def test_constrained_answers_score_only_the_answer_tokens_after_the_prompt(bases):
    """By hand: each label's summed log-prob after the prompt, the best is the prediction."""
    import torch

    model, tok = build("llama-causal").eval(), word_tokenizer()
    rows = ROWS[:5]
    dataset = load_examples(rows)
    labels = ["bad", "good"]
    scored = constrained_answers(model, tok, dataset, labels, NEWS_TOPIC, batch_size=3)
    expected = []
    with torch.no_grad():
        for row in rows:
            prompt = tok(NEWS_TOPIC.render(row["text"], labels))["input_ids"]
            best = []
            for label in labels:
                answer = tok(" " + label, add_special_tokens=False)["input_ids"]
                logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + answer])).logits[0].double(), -1)
                best.append(sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(answer)))
            expected.append(max(range(2), key=lambda j: best[j]))
    truth = [labels.index(r["label"]) for r in rows]
    hand = [[sum(1 for t, p in zip(truth, expected, strict=True) if t == a and p == b) for b in range(2)] for a in range(2)]
    assert scored["confusion_matrix"] == hand


def test_a_card_without_a_protocol_needs_the_data_and_a_bad_protocol_is_refused(bases, tmp_path):
    folder = train(bases / "bert-seqcls", bases / "cls.jsonl", "lora", tmp_path / "bare", steps=1, batch_size=4,
                   progress=False, device="cpu").path
    with pytest.raises(InvalidAdapterError, match="records no evaluation protocol; give the data"):
        evaluate_adapter(folder, bases / "bert-seqcls", progress=False, device="cpu")
    result = evaluate_adapter(folder, bases / "bert-seqcls", bases / "cls.jsonl", progress=False, device="cpu")
    assert result.protocol["scoring"] == ARGMAX_HEAD and result.protocol["max_length"] == 128  # the training length
    with pytest.raises(ProtocolError, match="unknown scoring"):
        EvalProtocol.from_dict({**result.protocol, "scoring": "vibes"})
    with pytest.raises(ProtocolError, match="needs a prompt template"):
        EvalProtocol(task="classification", scoring=CONSTRAINED_ANSWER, data=DataRef("x.jsonl"), labels=("a", "b"))
    with pytest.raises(ProtocolError, match="template: its text does not match its sha256"):
        p = EvalProtocol(task="classification", scoring=CONSTRAINED_ANSWER, data=DataRef("x.jsonl"),
                         labels=("a", "b"), template=NEWS_TOPIC).to_dict()
        p["template"]["text"] += " "
        EvalProtocol.from_dict(p)


def test_perplexity_reproduces_within_its_tolerance_and_says_so_otherwise():
    ok, diffs = same_figures({"metrics": {"perplexity": 10.0}}, {"metrics": {"perplexity": 10.0005}}, TOKEN_NLL)
    assert ok and diffs == []
    ok, diffs = same_figures({"metrics": {"perplexity": 10.0}}, {"metrics": {"perplexity": 10.01}}, TOKEN_NLL)
    assert not ok and "relative 1.00e-03 > 0.0001" in diffs[0]
