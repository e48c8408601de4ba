"""The evaluation harness: accuracy, macro-F1 and the confusion matrix for classifiers, token-weighted
perplexity for language models. Batched, under ``torch.inference_mode()``, deterministic (eval mode,
examples in file order), with a progress bar on stderr; every result names the dataset's sha256.

``compose.workflows.reproduce.evaluate_adapter`` scores an adapter folder by its card's protocol.

>>> result = evaluate(model, tokenizer, load_dataset("test.jsonl"), labels=labels)          # doctest: +SKIP
>>> result.metrics, result.n_examples, result.dataset_sha256[:12]                          # doctest: +SKIP
({'accuracy': 0.93, 'macro_f1': 0.929}, 200, '3f1c0a9e2b7d')
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from adapterhub import format as fmt
from adapterhub.compose.workflows.data import Dataset, DatasetError
from adapterhub.errors import IncompatibleAdapterError
from adapterhub.vocab import CLASSIFICATION, LM, task_named


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation measured, and on exactly which examples."""

    task: str
    dataset: str
    dataset_sha256: str
    n_examples: int
    metrics: dict[str, float]
    labels: list[str] | None = None
    confusion_matrix: list[list[int]] | None = field(default=None, repr=False)  # rows: true, columns: predicted
    n_tokens: int | None = None
    protocol: dict | None = None  # adapterhub.eval_protocol.EvalProtocol.to_dict(): how it was run

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


# ---------------------------------------------------------------------- metrics (pure)
def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> list[list[int]]:
    """``m[t][p]`` counts examples of true class ``t`` predicted as ``p``."""
    m = [[0] * n_labels for _ in range(n_labels)]
    for t, p in zip(y_true, y_pred, strict=True):
        m[t][p] += 1
    return m


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> tuple[dict, list[list[int]]]:
    """Accuracy and macro-F1 (averaged over the classes that occur in ``y_true`` or ``y_pred``, as
    scikit-learn does; a class never predicted correctly scores F1 0), plus the confusion matrix."""
    if not y_true:
        raise DatasetError("cannot compute metrics on zero examples")
    m = confusion_matrix(y_true, y_pred, n_labels)
    correct = sum(m[i][i] for i in range(n_labels))
    f1s = []
    for c in range(n_labels):
        tp = m[c][c]
        fn = sum(m[c]) - tp
        fp = sum(m[r][c] for r in range(n_labels)) - tp
        if tp + fn + fp == 0:
            continue  # class absent from both truth and predictions
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": correct / len(y_true), "macro_f1": sum(f1s) / len(f1s)}, m


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp of the mean negative log-likelihood per predicted token (token-weighted over the dataset)."""
    if n_tokens <= 0:
        raise DatasetError("no tokens to score: every text is a single token or empty after tokenisation")
    return math.exp(nll_sum / n_tokens)


# ---------------------------------------------------------------------- models and tokenizers
def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def encode(tokenizer, texts: list[str], max_length: int, device) -> dict[str, torch.Tensor]:
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def label_ids(dataset: Dataset, labels: Sequence[str]) -> list[int]:
    """Each example's label as an index into ``labels``; a label the model does not know is an error."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({e.label for e in dataset.examples} - set(index))
    if unknown:
        raise IncompatibleAdapterError(
            f"{dataset.name}: label {unknown[0]!r} is not one the model predicts ({', '.join(labels)})"
        )
    return [index[e.label] for e in dataset.examples]


def _batches(n: int, size: int):
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


# ---------------------------------------------------------------------- evaluation
def evaluate(model, tokenizer, dataset: Dataset, *, labels: Sequence[str] | None = None, batch_size: int = 16,
             max_length: int = 256, progress: bool = True, desc: str = "eval") -> EvalResult:
    """Score ``model`` (with its active adapters) on ``dataset``; ``labels`` name the classifier's outputs."""
    if batch_size < 1:
        raise DatasetError(f"batch_size must be a positive integer, got {batch_size}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(dataset), desc=desc, unit="ex", file=sys.stderr, disable=not progress, leave=False)
    try:
        with torch.inference_mode():
            if dataset.task == CLASSIFICATION.name:
                result = _eval_classification(model, tokenizer, dataset, labels or dataset.labels, batch_size,
                                              max_length, device, bar)
            else:
                result = _eval_lm(model, tokenizer, dataset, batch_size, max_length, device, bar)
    finally:
        bar.close()
        model.train(was_training)
    return result


def _eval_classification(model, tokenizer, dataset, labels, batch_size, max_length, device, bar) -> EvalResult:
    labels = list(labels)
    y_true = label_ids(dataset, labels)
    y_pred: list[int] = []
    texts = dataset.texts
    for rows in _batches(len(texts), batch_size):
        logits = model(**encode(tokenizer, [texts[i] for i in rows], max_length, device)).logits
        if logits.shape[-1] != len(labels):
            raise IncompatibleAdapterError(f"the model predicts {logits.shape[-1]} classes, the labels are {labels}")
        y_pred.extend(logits.argmax(-1).tolist())
        bar.update(len(rows))
    metrics, matrix = classification_metrics(y_true, y_pred, len(labels))
    return EvalResult(CLASSIFICATION.name, dataset.name, dataset.sha256, len(dataset), metrics, labels, matrix)


def _eval_lm(model, tokenizer, dataset, batch_size, max_length, device, bar) -> EvalResult:
    nll_sum, n_tokens = 0.0, 0
    texts = dataset.texts
    for rows in _batches(len(texts), batch_size):
        batch = encode(tokenizer, [texts[i] for i in rows], max_length, device)
        logits = model(**batch).logits.float()
        nll, count = token_nll(logits, batch["input_ids"], batch["attention_mask"])
        nll_sum += nll
        n_tokens += count
        bar.update(len(rows))
    metrics = {"perplexity": perplexity(nll_sum, n_tokens), "loss": nll_sum / max(1, n_tokens)}
    return EvalResult(LM.name, dataset.name, dataset.sha256, len(dataset), metrics, n_tokens=n_tokens)


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """Summed next-token NLL and the number of scored tokens; a token counts when it and the one
    predicting it are both real (not padding), so left and right padding give the same sum."""
    targets = input_ids[:, 1:]
    valid = mask[:, 1:].bool() & mask[:, :-1].bool()
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return float(-(logp * valid).sum()), int(valid.sum())


# ---------------------------------------------------------------------- adapters from folders or the hub
def recipe_name(folder: Path, block) -> str:
    return fmt.read_json_object(folder / fmt.RECIPE_FILE).get("name") or str(block)


def recipe_task(folder: Path) -> tuple[str | None, list[str] | None]:
    """A recipe's own card decides; else its adapters do (the last one with labels names the head,
    as the last active adapter's head is the one that runs)."""
    if (folder / fmt.CARD_FILE).is_file():
        return adapter_task(folder)
    task, labels = None, None
    for entry in (fmt.read_json_object(folder / fmt.RECIPE_FILE).get("adapters") or {}).values():
        sub = folder / str(entry.get("folder") or "")
        if entry.get("folder") and (sub / fmt.CONFIG_FILE).is_file():
            t, lbl = adapter_task(sub)
            task, labels = task or t, lbl or labels
    return task, labels


def adapter_task(folder: Path) -> tuple[str | None, list[str] | None]:
    """The task and label names an adapter folder declares (card first, then PEFT's task_type)."""
    card = fmt.read_json_object(folder / fmt.CARD_FILE) if (folder / fmt.CARD_FILE).is_file() else {}
    task = task_named(card.get("task") or None) if isinstance(card.get("task"), str) else None
    if task is None:
        config = fmt.read_json_object(folder / fmt.CONFIG_FILE)
        declared = config.get("task_type")
        task = task_named(declared) if isinstance(declared, str) and declared else None
    labels = card.get("labels")
    return (task.name if task else None), (list(map(str, labels)) if labels else None)


__all__ = ["EvalResult", "classification_metrics", "confusion_matrix", "evaluate",
           "perplexity", "token_nll"]
