"""The UI's calls into the engine: load a base with adapters, predict base vs adapted, evaluate.

Thin wrappers over ``adapterhub.compose`` (nothing here the CLI could not do), shaped for pages:
plain dicts in and out, one loaded model per (base, adapters) kept by the caller's cache.

>>> pg = load_playground("minilm-l6", {"sent": Path("snapshot/1.0.0")})   # doctest: +SKIP
>>> predict(pg, "a fine film", "single", ["sent"])["adapted"]            # doctest: +SKIP
{'neg': 0.12, 'pos': 0.88}
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from adapterhub.errors import IncompatibleAdapterError

MODES = ("single", "stack", "average")
MAX_NEW_TOKENS = 24


@dataclass
class Playground:
    model: object  # AdapterModel
    tokenizer: object
    task: str  # "classification" or "lm"
    labels: list[str] | None
    names: list[str]


def adapter_name(ref: str) -> str:
    """An engine-safe adapter name for a reference (``acme/sent-1@1.0.0`` -> ``acme_sent_1_1_0_0``)."""
    return re.sub(r"\W", "_", ref)


def load_playground(base: str, folders: dict[str, Path]) -> Playground:
    """The base (catalogue name or folder) with every adapter folder attached under its name.

    The task and labels come from the adapters' cards; all of them must agree.
    """
    from adapterhub.compose.evaluate import adapter_task, load_base, load_tokenizer
    from adapterhub.compose.model import AdapterModel

    declared = {name: adapter_task(folder) for name, folder in folders.items()}
    tasks = {task for task, _ in declared.values()}
    if len(tasks) != 1 or None in tasks:
        found = ", ".join(f"{n}: {t or 'unknown'}" for n, (t, _) in declared.items())
        raise IncompatibleAdapterError(f"the adapters must all declare one task (found {found})")
    task = tasks.pop()
    labels = next((lb for _, lb in declared.values() if lb), None)
    tokenizer = load_tokenizer(base)
    model = AdapterModel(load_base(base, task, labels, tokenizer=tokenizer))
    for name, folder in folders.items():
        model.load_adapter(folder, name=name)
    return Playground(model.eval(), tokenizer, task, labels, list(folders))


def activate(pg: Playground, mode: str, names: list[str]) -> None:
    from adapterhub.compose.composition import Average, Stack

    if not names:
        raise IncompatibleAdapterError("pick at least one adapter")
    if mode == "single" and len(names) != 1:
        raise IncompatibleAdapterError(f"single mode runs one adapter, {len(names)} were picked: choose stack")
    blocks = {"single": lambda: names[0], "stack": lambda: Stack(*names), "average": lambda: Average(*names)}
    pg.model.set_active(blocks[mode]())


def _run(pg: Playground, text: str):
    import torch

    batch = pg.tokenizer([text], return_tensors="pt", truncation=True, max_length=256)
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.inference_mode():
        if pg.task == "classification":
            probs = torch.softmax(pg.model(**batch).logits[0].float(), -1).tolist()
            return {label: round(p, 4) for label, p in zip(pg.labels, probs, strict=True)}
        out = pg.model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                pad_token_id=pg.tokenizer.pad_token_id)
        return pg.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def predict(pg: Playground, text: str, mode: str, names: list[str]) -> dict:
    """``{"base": ..., "adapted": ...}``: label probabilities (classifiers) or generated text (LMs)."""
    if not text.strip():
        raise IncompatibleAdapterError("type some text first")
    activate(pg, mode, names)
    with pg.model.disable_adapters():
        base = _run(pg, text)
    return {"task": pg.task, "base": base, "adapted": _run(pg, text)}


def save_upload(name: str, data: bytes) -> Path:
    """An uploaded data file written to a temp file with its suffix (the loader reads by suffix)."""
    suffix = Path(name).suffix.lower() or ".jsonl"
    with tempfile.NamedTemporaryFile("wb", suffix=suffix, prefix="adapterhub-upload-", delete=False) as f:
        f.write(data)
    return Path(f.name)


def evaluate(folder: Path, base: str, data: str | Path, on_stage=lambda text, fraction: None):
    """Evaluate an adapter folder; ``on_stage`` hears the progress."""
    from adapterhub.compose.data import load_dataset
    from adapterhub.compose.evaluate import adapter_task, evaluate_adapter

    on_stage("reading the data", 0.2)
    task, _ = adapter_task(folder)
    dataset = load_dataset(data, task)
    on_stage(f"loading the base and scoring {len(dataset)} examples", 0.4)
    return evaluate_adapter(folder, base, dataset, progress=False, batch_size=16)
