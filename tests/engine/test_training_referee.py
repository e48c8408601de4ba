"""The training referee: our trainer and PEFT's model in a plain loop, from the same start, walk the same path.

For LoRA, IA³, prompt tuning and prefix tuning: the real all-MiniLM-L6-v2 on real BBC News articles.
Our adapter is built as ``adapterhub train`` builds it (``training.build_trainee``), saved before
its first step, and loaded into PEFT (``PeftModel.from_pretrained(..., is_trainable=True)``), so both
start from the same adapter and head weights. Then our loop (``training.fit``) and a plain loop over
the PEFT model written here (AdamW, the same linear decay, the same gradient clipping, the same
batches in the same order) each take the same steps. Dropout is off in the base and the adapter
(dropout masks are random draws whose order is an implementation detail), so any difference in
the loss curves is a difference in what is trained: the forward, which positions get gradients,
the head, the learning rate or the schedule.

Tolerance: every step's loss within 2e-4 absolute (float32 sums in another order drift that much
over 12 Adam steps; a different forward or gradient moves the loss by 1e-2 or more in the first steps).
"""

from __future__ import annotations

import pytest
import torch

from adapterhub.compose.workflows.base import load_tokenizer
from adapterhub.compose.workflows.catalog import resolve_base_model
from adapterhub.compose.workflows.data import load_dataset, load_examples
from adapterhub.compose.workflows.evaluate import encode, label_ids
from adapterhub.compose.workflows.training import TRAINING_DEFAULTS, _order, build_trainee, fit, split_hyper

pytestmark = pytest.mark.slow

TOLERANCE = 2e-4
STEPS, BATCH, MAX_LENGTH = 12, 8, 48
METHODS = {
    "lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"], "dropout": 0.0, "lr": 5e-3},
    "ia3": {"lr": 2e-2},
    "prompt_tuning": {"num_virtual_tokens": 8, "lr": 3e-2},
    "prefix_tuning": {"num_virtual_tokens": 8, "lr": 1e-2},
}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    base = resolve_base_model("minilm-l6", say=lambda m: None)
    no_dropout = tmp_path_factory.mktemp("minilm-no-dropout")
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(base, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    AutoModel.from_pretrained(base, config=config).save_pretrained(no_dropout)
    load_tokenizer(base).save_pretrained(no_dropout)
    articles = load_dataset("bbc-news:train")
    rows = [{"text": e.text, "label": e.label} for e in articles.examples[::20][:64]]
    return no_dropout, load_examples(rows, "classification", name="bbc-news:train every 20th")


def _peft_losses(folder, base, dataset, labels, settings) -> list[float]:
    """A plain loop over the PEFT model, as a PEFT user writes it."""
    from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
    config = PeftConfig.from_pretrained(folder)  # PEFT reads our adapter_config.json as it is
    config.inference_mode = False
    model = get_peft_model(model, config)  # (PEFT refuses is_trainable=True for prompt methods on load)
    weights = load_file(folder / "adapter_model.safetensors")
    result = set_peft_model_state_dict(model, weights)
    # PEFT loads a prompt method's embedding apart from the module state dict, and lists it as unexpected
    assert [k for k in result.unexpected_keys if k != "prompt_embeddings"] == []
    if "prompt_embeddings" in weights:
        assert torch.equal(model.prompt_encoder["default"].embedding.weight, weights["prompt_embeddings"])
    params = [p for p in model.parameters() if p.requires_grad]
    steps = settings["steps"]
    optimizer = torch.optim.AdamW(params, lr=settings["lr"], weight_decay=settings["weight_decay"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, (steps - s) / steps))
    targets = label_ids(dataset, labels)
    model.train()
    losses = []
    for rows in _order(len(dataset), steps, settings["batch_size"], settings["seed"]):
        batch = encode(tokenizer, [dataset.examples[i].text for i in rows], settings["max_length"], "cpu")
        loss = model(**batch, labels=torch.tensor([targets[i] for i in rows])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings["grad_clip"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("method", list(METHODS))
def test_our_trainer_and_peft_walk_the_same_loss_curve(task, method, tmp_path):
    base, dataset = task
    hyper = dict(METHODS[method])
    settings, config_kwargs = split_hyper(method, {**hyper, "steps": STEPS, "batch_size": BATCH,
                                                    "max_length": MAX_LENGTH, "seed": 3})
    assert settings["grad_clip"] == TRAINING_DEFAULTS["grad_clip"]
    labels = list(dataset.labels)
    tokenizer = load_tokenizer(base)
    model = build_trainee(base, "classification", labels, method, config_kwargs, "referee", settings["seed"],
                          tokenizer, torch.device("cpu"))
    start = tmp_path / "start"
    model.save_adapter("referee", start)  # the very weights our loop starts from
    model.train_adapter("referee")
    params = [p for p in model.parameters() if p.requires_grad]
    ours, _ = fit(model, tokenizer, dataset, labels, params, settings, torch.device("cpu"), False, "referee")
    theirs = _peft_losses(start, base, dataset, labels, settings)

    gaps = [abs(a - b) for a, b in zip(ours, theirs, strict=True)]
    print(f"{method}: max |loss gap| {max(gaps):.2e} over {STEPS} steps (tolerance {TOLERANCE:g}); "
          f"ours {ours[0]:.4f} -> {ours[-1]:.4f}, PEFT {theirs[0]:.4f} -> {theirs[-1]:.4f}")
    assert ours[-1] < ours[0] - 0.01, f"{method} did not learn: the referee would compare two flat lines"
    assert max(gaps) <= TOLERANCE, f"{method}: ours {ours} vs PEFT {theirs}"
