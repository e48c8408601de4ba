"""The Pfeiffer seed is AdapterHub's Pfeiffer: written with ``format="adapters"`` its config is the
one ``adapters``' own ``SeqBnConfig`` writes, and ``adapters`` 1.3, loading it so, classifies the
card's evaluation sample (its protocol: data, sample, max_length, truncation) with the card's
confusion matrix, as our engine does."""

from __future__ import annotations

import json

import pytest
import torch

import adapterhub as ah
from adapterhub.cli.server import seed_root
from adapterhub.compose.workflows.base import load_base, load_tokenizer
from adapterhub.compose.workflows.reproduce import _base_folder, load_protocol_data
from adapterhub.eval_protocol import card_protocol
from tests.helpers.tiny import build
from tests.interop.referee import adapters_logits_many, make_adapter, save_tiny_base

pytestmark = pytest.mark.slow
SEED = "minilm-20ng-pfeiffer"


def confusion(predicted: torch.Tensor, gold: list[int], n: int) -> list[list[int]]:
    matrix = [[0] * n for _ in range(n)]
    for g, p in zip(gold, predicted.tolist(), strict=True):
        matrix[g][p] += 1
    return matrix


def test_the_pfeiffer_seed_reproduces_its_card_in_adapters(tmp_path):
    folder = seed_root() / SEED
    card = json.loads((folder / "adapterhub.json").read_text())
    protocol = card_protocol(card)
    base_dir = _base_folder(protocol, None)
    tokenizer = load_tokenizer(base_dir)
    tokenizer.padding_side, tokenizer.truncation_side = protocol.padding_side, protocol.truncation
    labels = list(protocol.labels)
    model = ah.AdapterModel(load_base(base_dir, "classification", labels, tokenizer=tokenizer))
    model.load_adapter(folder, set_active=True)
    written = model.save_adapter(SEED, tmp_path / "as-adapters", format="adapters")
    # the config adapters' own SeqBnConfig writes (made on a tiny BERT), but for what the base sets
    stock_dir = make_adapter(save_tiny_base(build("bert-seqcls"), tmp_path / "tiny"), "seqcls", "seq_bn", {},
                             "x", 0, tmp_path / "stock")
    stock = json.loads((stock_dir / "adapter_config.json").read_text())["config"]
    ours = json.loads((written / "adapter_config.json").read_text())["config"]
    assert {k: v for k, v in ours.items() if k != "init_weights"} == {
        k: v for k, v in stock.items() if k != "init_weights"}

    data = load_protocol_data(protocol)
    batch = tokenizer([e.text for e in data.examples], padding=True, truncation=True,
                      max_length=protocol.max_length, return_tensors="pt")
    gold = [labels.index(e.label) for e in data.examples]
    model.eval()
    with torch.no_grad():
        our_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    base_copy = tmp_path / "base"
    load_base(base_dir, "classification", labels, tokenizer=tokenizer).save_pretrained(base_copy)
    theirs, = adapters_logits_many([dict(base_dir=base_copy, head="seqcls", adapters=[written], setup=SEED,
                                         input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])])
    expected = card["evaluation"]["confusion_matrix"]
    assert confusion(our_logits.argmax(-1), gold, len(labels)) == expected
    assert confusion(theirs.argmax(-1), gold, len(labels)) == expected
    assert (our_logits - theirs).abs().max().item() < 1e-4
