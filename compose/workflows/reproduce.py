"""Evaluate an adapter by a protocol, and re-run a recorded evaluation to see whether it reproduces.

``evaluate_adapter`` takes its defaults from the adapter itself: the protocol its card's figures
were scored with (base, data and seeded sample, ``max_length``, batch size, scoring rule, template).
Anything the caller sets otherwise is recorded in the result's protocol as an override, so two
figures for one version on one dataset always say why they differ.

>>> result = evaluate_adapter("seed_adapters/minilm-bbc-news-lora")      # doctest: +SKIP
>>> result.protocol["data"]["ref"], result.metrics["accuracy"]            # doctest: +SKIP
('bbc-news:test', 0.97...)
>>> verify("seed_adapters/minilm-bbc-news-lora").reproduced              # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from adapterhub import format as fmt
from adapterhub.compose.core.hub import pull_from_registry
from adapterhub.compose.folder import load
from adapterhub.compose.workflows.base import load_base, load_tokenizer
from adapterhub.compose.workflows.catalog import hub_id, resolve_base_model
from adapterhub.compose.workflows.data import Dataset, load_dataset, seeded_sample
from adapterhub.compose.workflows.evaluate import (
    EvalResult,
    adapter_task,
    default_device,
    evaluate,
    recipe_name,
    recipe_task,
)
from adapterhub.compose.workflows.instruct import NEWS_TOPIC, constrained_answers
from adapterhub.errors import IncompatibleAdapterError, InvalidAdapterError
from adapterhub.eval_protocol import (
    ARGMAX_HEAD,
    CONSTRAINED_ANSWER,
    TOKEN_NLL,
    DataRef,
    EvalProtocol,
    card_results,
    same_figures,
)
from adapterhub.vocab import CLASSIFICATION, LM


def software_versions() -> dict[str, str]:
    import transformers

    from adapterhub import __version__

    return {"adapterhub": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def load_protocol_data(protocol: EvalProtocol) -> Dataset:
    """The examples a protocol names: its data reference, then its seeded sample."""
    task = CLASSIFICATION.name if protocol.scoring != TOKEN_NLL else LM.name
    dataset = load_dataset(protocol.data.ref, task)
    if protocol.data.sample:
        dataset = seeded_sample(dataset, protocol.data.sample, protocol.data.sample_seed)
    return dataset


def _card(folder: Path) -> dict:
    return fmt.read_json_object(folder / fmt.CARD_FILE) if (folder / fmt.CARD_FILE).is_file() else {}


def _is_causal(folder: Path, recipe: bool) -> bool:
    task, _labels = recipe_task(folder) if recipe else adapter_task(folder)
    return task == LM.name


def protocol_for(folder: Path, *, base: str | Path | None = None, data: str | Path | None = None,
                 task: str | None = None, scoring: str | None = None, sample: int | None = None,
                 sample_seed: int | None = None, max_length: int | None = None,
                 batch_size: int | None = None) -> EvalProtocol:
    """The protocol to evaluate ``folder`` by: its card's, with whatever the caller sets otherwise."""
    recipe = (folder / fmt.RECIPE_FILE).is_file()
    card = _card(folder)
    results = card_results(card)
    if results:
        protocol = results[0][0]
        if data is not None and str(data) != protocol.data.ref:
            # other data: the card's task and scoring still hold, its sample does not
            protocol = replace(protocol, data=DataRef(str(data)),
                               overrides={**protocol.overrides, "data": {"card": protocol.data.label(), "used": str(data)}})
        return protocol.with_overrides(base=str(base) if base else None, scoring=scoring, sample=sample,
                                       sample_seed=sample_seed, max_length=max_length, batch_size=batch_size)
    if data is None:
        raise InvalidAdapterError(f"{folder.name}: its card records no evaluation protocol; give the data to score "
                                  f"(--data: a JSONL/CSV file or a built-in name:split)")
    declared, labels = recipe_task(folder) if recipe else adapter_task(folder)
    causal = declared == LM.name
    task = task or declared
    if scoring is None:
        if causal and task == CLASSIFICATION.name:
            scoring = CONSTRAINED_ANSWER
        else:
            scoring = TOKEN_NLL if task == LM.name or (task is None and causal) else ARGMAX_HEAD
    if scoring == CONSTRAINED_ANSWER and labels is None:
        labels = list(load_dataset(data, CLASSIFICATION.name).labels)
    recipe_settings = card.get("recipe") if isinstance(card.get("recipe"), dict) else {}
    named = card.get("base_model") if isinstance(card.get("base_model"), dict) else {}
    return EvalProtocol(
        task=CLASSIFICATION.name if scoring != TOKEN_NLL else LM.name, scoring=scoring,
        data=DataRef(str(data), sample=sample, sample_seed=sample_seed or 0),
        labels=tuple(labels) if labels else None,
        max_length=max_length or int(recipe_settings.get("max_length") or 256),
        batch_size=batch_size or 16, template=NEWS_TOPIC if scoring == CONSTRAINED_ANSWER else None,
        base=str(base) if base else (named.get("id") or named.get("name_or_path")),
    )


def _base_folder(protocol: EvalProtocol, base: str | Path | None) -> Path:
    chosen = base or protocol.base
    if not chosen:
        raise InvalidAdapterError("no base model: the adapter's card names none; give --base")
    return resolve_base_model(chosen, say=lambda m: print(m, file=sys.stderr))


def run_protocol(folder: Path, protocol: EvalProtocol, *, base: str | Path | None = None, progress: bool = True,
                 device: str | torch.device | None = None, pull: Callable[[str], Path] | None = None,
                 adapters: bool = True) -> EvalResult:
    """Score the adapter (or recipe) in ``folder`` exactly as ``protocol`` says; ``adapters=False``
    scores the bare base model on the same protocol (the card's "base" figure)."""
    from adapterhub.compose.core.model import AdapterModel

    pull = pull or pull_from_registry
    recipe = (folder / fmt.RECIPE_FILE).is_file()
    declared, labels = recipe_task(folder) if recipe else adapter_task(folder)
    if protocol.scoring == ARGMAX_HEAD and declared == LM.name:
        raise IncompatibleAdapterError(f"{folder.name} is a causal language model adapter: score it with "
                                       f"{CONSTRAINED_ANSWER} or {TOKEN_NLL}, not {ARGMAX_HEAD}")
    dataset = load_protocol_data(protocol)
    labels = list(protocol.labels or labels or dataset.labels or []) or None
    base_path = _base_folder(protocol, base)
    tokenizer = load_tokenizer(base_path)
    tokenizer.padding_side, tokenizer.truncation_side = protocol.padding_side, protocol.truncation
    model_task = LM.name if protocol.scoring != ARGMAX_HEAD else CLASSIFICATION.name
    model = AdapterModel(load_base(base_path, model_task, labels if model_task == CLASSIFICATION.name else None,
                                   tokenizer=tokenizer))
    model.to(device or default_device())
    if recipe:
        block = model.load_composition(folder, set_active=True, pull=pull)
        name = recipe_name(folder, block)
    else:
        name = model.load_adapter(folder, set_active=True, pull=pull)
    torch.manual_seed(protocol.seed)
    with model.disable_adapters() if not adapters else contextlib.nullcontext():
        if protocol.scoring == CONSTRAINED_ANSWER:
            model.eval()
            bar = tqdm(total=len(dataset), desc=f"eval {name}", unit="ex", file=sys.stderr, disable=not progress,
                       leave=False)
            try:
                scored = constrained_answers(model, tokenizer, dataset, labels, protocol.template,
                                             batch_size=protocol.batch_size, max_length=protocol.max_length,
                                             on_batch=bar.update)
            finally:
                bar.close()
            result = EvalResult(CLASSIFICATION.name, dataset.name, dataset.sha256, len(dataset), scored["metrics"],
                                labels, scored["confusion_matrix"])
        else:
            result = evaluate(model, tokenizer, dataset, labels=labels, batch_size=protocol.batch_size,
                              max_length=protocol.max_length, progress=progress, desc=f"eval {name}")
    done = replace(protocol, data=replace(protocol.data, sha256=dataset.sha256, examples=len(dataset)),
                   labels=tuple(labels) if labels and protocol.scoring != TOKEN_NLL else None,
                   base=protocol.base or hub_id(base_path) or str(base), software=software_versions())
    return dataclasses.replace(result, protocol=done.to_dict())


def evaluate_adapter(adapter: str | Path, base: str | Path | None = None, data: str | Path | None = None, *,
                     task: str | None = None, scoring: str | None = None, batch_size: int | None = None,
                     max_length: int | None = None, sample: int | None = None, sample_seed: int | None = None,
                     progress: bool = True, device: str | torch.device | None = None,
                     pull: Callable[[str], Path] | None = None) -> EvalResult:
    """Load the base, attach ``adapter`` (a folder or registry reference) and score it by the protocol
    its card records, or by the one the arguments make; every argument given is recorded."""
    pull = pull or pull_from_registry
    folder = load.resolve_source(adapter, pull)
    protocol = protocol_for(folder, base=base, data=data, task=task, scoring=scoring, sample=sample,
                            sample_seed=sample_seed, max_length=max_length, batch_size=batch_size)
    return run_protocol(folder, protocol, base=base, progress=progress, device=device, pull=pull)


@dataclass(frozen=True)
class Verification:
    """A re-run of one recorded evaluation: whether it reproduced, and each difference in words."""

    protocol: dict
    recorded: dict
    result: EvalResult
    reproduced: bool
    differences: list[str]

    def to_dict(self) -> dict:
        return {"reproduced": self.reproduced, "differences": self.differences, "protocol": self.protocol,
                "recorded": self.recorded, "result": self.result.to_dict()}


def verify_record(folder: Path, protocol: EvalProtocol, recorded: dict, *, progress: bool = True,
                  device: str | torch.device | None = None, pull: Callable[[str], Path] | None = None,
                  rel_tol: float = 1e-4) -> Verification:
    """Re-run ``recorded`` (``metrics``, ``confusion_matrix``, ``data_sha256``) by its ``protocol``."""
    result = run_protocol(folder, protocol, progress=progress, device=device, pull=pull)
    fresh = {"metrics": result.metrics, "confusion_matrix": result.confusion_matrix,
             "data_sha256": result.dataset_sha256}
    ok, diffs = same_figures(recorded, fresh, protocol.scoring, rel_tol)
    return Verification(protocol.to_dict(), recorded, result, ok, diffs)


def verify_card(adapter: str | Path, *, progress: bool = True, device: str | torch.device | None = None,
                pull: Callable[[str], Path] | None = None) -> list[Verification]:
    """Re-run every evaluation the adapter's card records (its headline figures first)."""
    pull = pull or pull_from_registry
    folder = load.resolve_source(adapter, pull)
    results = card_results(_card(folder))
    if not results:
        raise InvalidAdapterError(f"{folder.name}: its card records no evaluation protocol to re-run")
    return [verify_record(folder, protocol, recorded, progress=progress, device=device, pull=pull)
            for protocol, recorded in results]


__all__ = ["Verification", "evaluate_adapter", "load_protocol_data", "protocol_for", "run_protocol",
           "software_versions", "verify_card", "verify_record"]
