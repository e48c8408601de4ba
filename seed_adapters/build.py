"""Rebuild every seed adapter from scratch, deterministically: ``python seed_adapters/build.py`` (``make seeds``).

Real pretrained models (the engine's catalogue: ``minilm-l6``, ``smollm2-135m``) and real labelled
text (``compose/builtin_data.py``: fixed, documented splits), fixed seeds. Each adapter is trained
on its dataset's train split only and evaluated on a fixed seeded sample of the test split (the
sample size is recorded in its card), so nothing is evaluated on what it trained on. Data is never
written into the repository; the cards record the sha256 of the exact training and test examples.

    python seed_adapters/build.py                # all
    python seed_adapters/build.py --only minilm-bbc-news-lora
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NAMESPACE = "adapterhub"


@dataclass(frozen=True)
class Seed:
    name: str
    base: str
    dataset: str
    method: str
    hyper: dict[str, Any]
    description: str
    test_sample: int = 500
    instruct: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


SEEDS: tuple[Seed, ...] = (
    Seed("minilm-bbc-news-lora", "minilm-l6", "bbc-news", "lora",
         {"r": 8, "alpha": 16, "target_modules": ["query", "value"], "steps": 150, "batch_size": 16, "lr": 2e-3,
          "max_length": 128}, "BBC News topic (5 classes)", tags=("topic", "news")),
    Seed("minilm-20ng-pfeiffer", "minilm-l6", "20ng", "pfeiffer",
         {"reduction_factor": 16, "steps": 120, "batch_size": 16, "lr": 2e-3, "max_length": 128},
         "20 Newsgroups topic (20 classes)", test_sample=300, tags=("topic", "newsgroups")),
    Seed("minilm-reuters-r8-ia3", "minilm-l6", "reuters-r8", "ia3",
         {"steps": 100, "batch_size": 16, "lr": 1e-2, "max_length": 128}, "Reuters R8 topic (8 classes)",
         test_sample=300, tags=("topic", "news")),
    Seed("minilm-election-tweets-prefix", "minilm-l6", "election-tweets", "prefix_tuning",
         {"num_virtual_tokens": 16, "steps": 100, "batch_size": 16, "lr": 1e-2, "max_length": 64},
         "2016 election tweets: Clinton or Trump", test_sample=300, tags=("authorship", "tweets")),
    Seed("minilm-election-tweets-lora-fa", "minilm-l6", "election-tweets", "lora_fa",
         {"r": 8, "alpha": 16, "target_modules": ["query", "value"], "steps": 100, "batch_size": 16, "lr": 2e-3,
          "max_length": 64}, "2016 election tweets: Clinton or Trump (LoRA-FA: A frozen)",
         test_sample=300, tags=("authorship", "tweets")),
    Seed("smollm2-friends-lora", "smollm2-135m", "friends", "lora",
         {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"], "steps": 40, "batch_size": 8, "lr": 1e-3,
          "max_length": 64}, "Friends dialogue language model", test_sample=200, tags=("dialogue", "lm")),
    Seed("smollm2-friends-prompt", "smollm2-135m", "friends", "prompt_tuning",
         {"num_virtual_tokens": 16, "steps": 40, "batch_size": 8, "lr": 3e-2, "max_length": 64},
         "Friends dialogue language model (prompt tuning)", test_sample=200, tags=("dialogue", "lm")),
    Seed("smollm2-bbc-news-instruct-lora", "smollm2-135m", "bbc-news", "lora",
         {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"], "steps": 40, "batch_size": 8, "lr": 1e-3,
          "max_length": 160}, "BBC News topic as instruction following (the label is the answer)",
         test_sample=100, instruct=True, tags=("topic", "news", "instruction")),
)


def sample(dataset, n: int, seed: int = 0):
    """A fixed seeded sample of ``n`` examples, in the dataset's order (recorded by its sha256)."""
    from adapterhub.compose.data import load_examples

    if len(dataset) <= n:
        return dataset
    keep = sorted(random.Random(seed).sample(range(len(dataset)), n))
    rows = [{"text": dataset.examples[i].text, **({"label": dataset.examples[i].label} if dataset.task == "classification" else {})} for i in keep]
    return load_examples(rows, dataset.task, name=f"{dataset.name} (seeded sample of {n})")


def builtin(name: str):
    from adapterhub.compose.builtin_data import BUILTIN
    from adapterhub.compose.data import load_examples

    rows, task = BUILTIN[name]()
    return load_examples(rows, task, name=name)


def build_one(seed: Seed, out_root: Path) -> dict[str, Any]:
    from adapterhub.compose import io
    from adapterhub.compose.catalog import resolve_base_model
    from adapterhub.compose.training import train

    base = resolve_base_model(seed.base, say=lambda m: print(m, file=sys.stderr))
    train_ds = builtin(f"{seed.dataset}:train")
    test_ds = sample(builtin(f"{seed.dataset}:test"), seed.test_sample)
    out = out_root / seed.name
    started = time.perf_counter()
    if seed.instruct:
        from adapterhub.compose.instruct import as_instructions

        labels = list(train_ds.labels)
        result = train(base, as_instructions(train_ds, labels), seed.method, out, name=seed.name, **seed.hyper)
        metrics = instruct_metrics(base, out, test_ds, labels)
    else:
        result = train(base, train_ds, seed.method, out, eval_data=test_ds, name=seed.name, **seed.hyper)
        metrics = result.metrics
    card = io.read_json(out / io.CARD_FILE)
    card.update({
        "name": seed.name,
        "description": seed.description,
        "tags": list(seed.tags) + [seed.base, seed.method],
        "license": "apache-2.0",
        "metrics": metrics,
        "base_model": {**card["base_model"], "name_or_path": seed.base},
        "data": {
            "train": {"source": f"{seed.dataset}:train", "sha256": train_ds.sha256, "examples": len(train_ds)},
            "test": {"source": f"{seed.dataset}:test", "sha256": test_ds.sha256, "examples": len(test_ds),
                     "sample": f"seeded sample of {seed.test_sample}" if len(test_ds) == seed.test_sample else "all"},
        },
        "build": {"script": "seed_adapters/build.py", "wall_time_s": round(time.perf_counter() - started, 1)},
    })
    if seed.instruct:
        card["evaluation"] = {"kind": "constrained answer accuracy", "labels": labels}
    io._write_json(out / io.CARD_FILE, card)
    (out / "README.md").write_text(io.render_readme(card))
    return card


def instruct_metrics(base: Path, folder: Path, test_ds, labels: list[str]) -> dict[str, float]:
    from adapterhub.compose.evaluate import load_base, load_tokenizer
    from adapterhub.compose.instruct import constrained_accuracy
    from adapterhub.compose.model import AdapterModel

    tokenizer = load_tokenizer(base)
    model = AdapterModel(load_base(base, "lm", tokenizer=tokenizer))
    with model.disable_adapters():
        base_acc = constrained_accuracy(model, tokenizer, test_ds, labels)["metrics"]["accuracy"]
    model.load_adapter(folder, set_active=True)
    result = constrained_accuracy(model, tokenizer, test_ds, labels)
    return {**result["metrics"], "base_accuracy": base_acc}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="build only these seeds (repeatable)")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    chosen = [s for s in SEEDS if not args.only or s.name in args.only]
    for i, seed in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {seed.name}: {seed.method} on {seed.base} / {seed.dataset}", file=sys.stderr)
        card = build_one(seed, args.out)
        print(json.dumps({"name": seed.name, "metrics": card["metrics"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
