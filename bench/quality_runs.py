"""One run of the quality bench, in its own process: train one method on one dataset at one learning
rate and seed until the validation slice stops improving, restore the best checkpoint, score it on
the test split. ``bench/quality.py`` drives these runs and writes the tables.

Every method goes through the same code: the base is wrapped in ``AdapterModel`` and either given an
adapter by ``compose.workflows.training.build_trainee`` (the start ``train()`` uses, ``train_adapter``
freezing the rest) or, for ``full`` and ``head``, has its own weights unfrozen; then the one training loop
(``compose.workflows.training.fit``) runs, with early stopping hooked in through its ``on_step``.
"""

from __future__ import annotations

import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common

BASE = "minilm-l6"
LORA = {"r": 8, "alpha": 16, "target_modules": ["query", "value"]}
METHOD_CONFIGS: dict[str, dict[str, Any]] = {  # adapter config per method; full and head have none
    "full": {}, "head": {},
    "lora": LORA, "lora_fa": LORA,
    "pfeiffer": {"reduction_factor": 16},
    "ia3": {},
    "prefix_tuning": {"num_virtual_tokens": 16},
    "prompt_tuning": {"num_virtual_tokens": 16},
}
WEIGHT_METHODS = ("full", "head")  # trained by unfreezing the model's own weights, not an adapter


@dataclass(frozen=True)
class Protocol:
    """Everything but the method, lr and seed that decides a run's figures (its cache key hashes it)."""

    max_length: int = 128
    batch_size: int = 16
    val_fraction: float = 0.1   # of the train split, drawn with val_seed, the same for every run
    val_max: int = 300
    val_seed: int = 0
    evals_per_epoch: int = 2    # validation every half epoch...
    eval_every: int | None = None  # ...unless a step count is given (quick mode)
    patience: int = 3           # evaluations without a new best before stopping
    max_epochs: float = 6.0     # the cap; the linear-decay schedule spans it
    max_steps: int | None = None  # a tighter cap in steps (quick mode)
    test_sample: int | None = None  # None: the whole test split

    def n_val(self, n_train: int) -> int:
        """The validation slice's size for a train split of ``n_train`` examples."""
        return min(self.val_max, max(1, round(self.val_fraction * n_train)))

    def steps_per_epoch(self, n_train: int) -> int:
        return max(1, math.ceil(n_train / self.batch_size))

    def cap(self, n_train: int) -> int:
        steps = math.ceil(self.max_epochs * self.steps_per_epoch(n_train))
        return min(steps, self.max_steps) if self.max_steps else steps

    def every(self, n_train: int) -> int:
        return self.eval_every or max(1, self.steps_per_epoch(n_train) // self.evals_per_epoch)


def split_validation(train_ds, protocol: Protocol):
    """(fit, validation): a fixed seeded slice of the train split held out for early stopping and the
    lr choice (the test split is never looked at before the final score)."""
    from adapterhub.compose.workflows.data import load_examples

    n_val = protocol.n_val(len(train_ds))
    held = set(random.Random(protocol.val_seed).sample(range(len(train_ds)), n_val))

    def rows(keep):
        return [{"text": e.text, "label": e.label} for i, e in enumerate(train_ds.examples) if keep(i)]

    fit_ds = load_examples(rows(lambda i: i not in held), name=f"{train_ds.name} minus validation")
    val_ds = load_examples(rows(lambda i: i in held), name=f"{train_ds.name} validation slice ({n_val})")
    return fit_ds, val_ds


@dataclass
class EarlyStopper:
    """Keeps the best evaluation (higher accuracy; on a tie, lower loss; on a full tie, the earlier one)
    and says stop after ``patience`` evaluations in a row without a new best."""

    patience: int
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    since_best: int = 0

    def update(self, step: int, accuracy: float, loss: float) -> tuple[bool, bool]:
        """Record one evaluation; return (is a new best, should stop)."""
        point = {"step": step, "accuracy": round(accuracy, 6), "loss": round(loss, 6)}
        self.history.append(point)
        b = self.best
        better = b is None or accuracy > b["accuracy"] or (accuracy == b["accuracy"] and loss < b["loss"])
        if better:
            self.best, self.since_best = {"step": step, "accuracy": accuracy, "loss": loss}, 0
        else:
            self.since_best += 1
        return better, self.since_best >= self.patience


def validation_score(model, tokenizer, dataset, labels, batch_size: int, max_length: int) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the validation slice, in eval mode; train mode is put back."""
    import torch

    from adapterhub.compose.workflows.evaluate import encode, label_ids

    targets = label_ids(dataset, labels)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    try:
        with torch.inference_mode():
            for i in range(0, len(dataset), batch_size):
                rows = range(i, min(i + batch_size, len(dataset)))
                logits = model(**encode(tokenizer, [dataset.examples[j].text for j in rows], max_length, device)).logits
                y = torch.tensor([targets[j] for j in rows], device=device)
                loss_sum += float(torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
                correct += int((logits.argmax(-1) == y).sum())
    finally:
        model.train(was_training)
    return correct / len(dataset), loss_sum / len(dataset)


def _build(method: str, base: Path, labels: list[str], tokenizer, seed: int, device):
    """The model with exactly the method's parameters trainable, and the adapter's name (None for weights).
    Adapters come from ``training.build_trainee``, the very start ``train()`` uses (one random stream
    from ``seed``: the head, then the adapter); ``full`` and ``head`` unfreeze the base's own weights."""
    from adapterhub.compose.core.model import AdapterModel
    from adapterhub.compose.workflows.base import load_base
    from adapterhub.compose.workflows.training import build_trainee, split_hyper
    from adapterhub.vocab import CLASSIFICATION

    if method in WEIGHT_METHODS:
        model = AdapterModel(load_base(base, CLASSIFICATION.name, labels, seed=seed, tokenizer=tokenizer)).to(device)
        for p in (model.parameters() if method == "full" else model.classifier.parameters()):
            p.requires_grad_(True)
        model.train()
        return model, None
    _, config_kwargs = split_hyper(method, dict(METHOD_CONFIGS[method]))
    return build_trainee(base, CLASSIFICATION.name, labels, method, config_kwargs, method, seed, tokenizer,
                         device), method


def _save(model, name: str | None, method: str, out: Path) -> int:
    """What a user would ship (the adapter folder; the whole model for full; the head for head), in bytes."""
    from safetensors.torch import save_file

    if name is not None:
        model.save_adapter(name, out)
    else:
        out.mkdir(parents=True)
        shipped = model.base_state_dict() if method == "full" else model.classifier.state_dict()
        save_file({k: v.detach().contiguous() for k, v in shipped.items()}, str(out / "weights.safetensors"))
    return sum(p.stat().st_size for p in out.rglob("*.safetensors"))


def run_one(dataset: str, method: str, lr: float, seed: int, protocol: Protocol, threads: int) -> dict[str, Any]:
    """Train to the best validation checkpoint and score it on the test split, in this process."""
    import torch

    from adapterhub.compose.workflows.base import load_tokenizer
    from adapterhub.compose.workflows.catalog import resolve_base_model
    from adapterhub.compose.workflows.data import load_dataset, seeded_sample
    from adapterhub.compose.workflows.evaluate import default_device, evaluate
    from adapterhub.compose.workflows.training import TRAINING_DEFAULTS, fit

    torch.set_num_threads(threads)
    cpu0 = time.process_time()
    base = resolve_base_model(BASE, say=lambda m: print(m, file=sys.stderr))
    train_ds = load_dataset(f"{dataset}:train")
    test_ds = load_dataset(f"{dataset}:test")
    if protocol.test_sample:
        test_ds = seeded_sample(test_ds, protocol.test_sample, 0)
    fit_ds, val_ds = split_validation(train_ds, protocol)
    labels = list(train_ds.labels)
    tokenizer = load_tokenizer(base)
    device = default_device()
    model, name = _build(method, base, labels, tokenizer, seed, device)
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    cap, every = protocol.cap(len(fit_ds)), protocol.every(len(fit_ds))
    settings = {**TRAINING_DEFAULTS, "steps": cap, "lr": lr, "batch_size": protocol.batch_size, "seed": seed,
                "max_length": protocol.max_length}
    stopper = EarlyStopper(protocol.patience)
    best_weights: dict[str, torch.Tensor] = {}
    eval_s = 0.0
    loaded_rss = common.current_rss_mb()

    def check(step: int) -> bool:
        nonlocal eval_s
        t0 = time.perf_counter()
        acc, loss = validation_score(model, tokenizer, val_ds, labels, protocol.batch_size, protocol.max_length)
        eval_s += time.perf_counter() - t0
        better, stop = stopper.update(step, acc, loss)
        if better:
            best_weights.update({k: p.detach().clone() for k, p in trainable})
        print(f"[quality]     step {step}/{cap}: val accuracy {acc:.4f} loss {loss:.4f}{' *' if better else ''}",
              file=sys.stderr, flush=True)
        return stop

    losses, seconds = fit(model, tokenizer, fit_ds, labels, params, settings, device, False, method,
                          on_step=lambda step, _loss: step % every == 0 and check(step))
    if len(losses) % every != 0:  # the cap fell between two evaluations: score the last step too
        check(len(losses))
    with torch.no_grad():  # the best checkpoint's trainable weights back in place before the test score
        for k, p in trainable:
            p.copy_(best_weights[k])
    restored_acc, restored_loss = validation_score(model, tokenizer, val_ds, labels, protocol.batch_size,
                                                   protocol.max_length)
    model.eval()
    t0 = time.perf_counter()
    result = evaluate(model, tokenizer, test_ds, labels=labels, batch_size=protocol.batch_size,
                      max_length=protocol.max_length, progress=False)
    test_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        size = _save(model, name, method, Path(tmp) / method)
    best = stopper.best
    return {
        "dataset": dataset, "method": method, "lr": lr, "seed": seed, "config": METHOD_CONFIGS[method],
        "accuracy": result.metrics["accuracy"], "macro_f1": result.metrics["macro_f1"],
        "val_accuracy": best["accuracy"], "val_loss": best["loss"], "best_step": best["step"],
        "best_epoch": round(best["step"] / protocol.steps_per_epoch(len(fit_ds)), 2),
        "restored_val_accuracy": restored_acc, "restored_val_loss": restored_loss,
        "steps_run": len(losses), "cap_steps": cap, "eval_every": every,
        "stopped_early": len(losses) < cap, "evaluations": stopper.history, "final_train_loss": losses[-1],
        "trainable_parameters": sum(p.numel() for p in params),
        "total_parameters": sum(p.numel() for p in model.parameters()), "size_bytes": size,
        "train_s": round(seconds, 1), "val_eval_s": round(eval_s, 1), "test_eval_s": round(test_s, 1),
        "s_per_step": round((seconds - eval_s) / max(1, len(losses)), 4),
        "fit_examples": len(fit_ds), "val_examples": len(val_ds), "val_sha256": val_ds.sha256,
        "train_sha256": train_ds.sha256, "test_examples": len(test_ds), "test_sha256": test_ds.sha256,
        "cpu_s": round(time.process_time() - cpu0, 1), "rss_before_training_mb": round(loaded_rss, 1),
        "peak_rss_mb": round(common.peak_rss_mb(), 1), "torch_threads": torch.get_num_threads(),
    }
