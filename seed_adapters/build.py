"""Rebuild every seed adapter from scratch, deterministically: ``python seed_adapters/build.py`` (``make seeds``).

Real pretrained models (the engine's catalogue: ``minilm-l6``, ``smollm2-135m``) and real labelled
text (``compose/workflows/builtin_data.py``: fixed, documented splits), fixed seeds. Each adapter is trained
on its dataset's train split only and evaluated on a fixed seeded sample of the test split (the
sample size is recorded in its card), so nothing is evaluated on what it trained on. Data is never
written into the repository; the cards record the sha256 of the exact training and test examples.

    python seed_adapters/build.py                # all
    python seed_adapters/build.py --only minilm-bbc-news-lora
    python seed_adapters/build.py --resave-metadata  # rewrite the base's id into the committed folders

Every folder names its base by its Hugging Face Hub id (``resave_metadata``): ``adapter_config.json``'s
``base_model_name_or_path``, the card's ``base_model.id`` and the README's front matter. The weights
are never touched by that step.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapterhub import format as fmt

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


def seed_protocol(seed: Seed, labels: list[str] | None = None):
    """The protocol a seed's card figures are scored by: its dataset's test split (a seeded sample of
    ``test_sample`` where the split is larger), its training ``max_length`` and batch size; the
    instruction seed by constrained answer with the news-topic template."""
    from adapterhub.compose.workflows.catalog import hub_id
    from adapterhub.compose.workflows.data import load_dataset
    from adapterhub.compose.workflows.instruct import NEWS_TOPIC
    from adapterhub.eval_protocol import ARGMAX_HEAD, CONSTRAINED_ANSWER, TOKEN_NLL, DataRef, EvalProtocol

    ref = f"{seed.dataset}:test"
    full = len(load_dataset(ref))
    scoring = CONSTRAINED_ANSWER if seed.instruct else TOKEN_NLL if seed.dataset == "friends" else ARGMAX_HEAD
    return EvalProtocol(
        task="lm" if scoring == TOKEN_NLL else "classification", scoring=scoring,
        data=DataRef(ref, sample=seed.test_sample if seed.test_sample < full else None),
        labels=tuple(labels) if labels and scoring != TOKEN_NLL else None, max_length=seed.hyper["max_length"],
        batch_size=seed.hyper["batch_size"], template=NEWS_TOPIC if seed.instruct else None, base=hub_id(seed.base))


def build_one(seed: Seed, out_root: Path) -> dict[str, Any]:
    from adapterhub.compose.workflows.catalog import resolve_base_model
    from adapterhub.compose.workflows.data import load_dataset
    from adapterhub.compose.workflows.training import train

    base = resolve_base_model(seed.base, say=lambda m: print(m, file=sys.stderr))
    train_ds = load_dataset(f"{seed.dataset}:train")
    out = out_root / seed.name
    started = time.perf_counter()
    data = train_ds
    if seed.instruct:
        from adapterhub.compose.workflows.instruct import as_instructions

        data = as_instructions(train_ds, list(train_ds.labels))
    train(base, data, seed.method, out, name=seed.name, **seed.hyper)
    card = fmt.read_json_object(out / fmt.CARD_FILE)
    card.update({
        "name": seed.name,
        "description": seed.description,
        "tags": list(seed.tags) + [seed.base, seed.method],
        "license": "apache-2.0",
        "base_model": {**card["base_model"], "name_or_path": seed.base},
        "data": {"train": {"source": f"{seed.dataset}:train", "sha256": train_ds.sha256, "examples": len(train_ds)}},
        "build": {"script": "seed_adapters/build.py", "wall_time_s": round(time.perf_counter() - started, 1)},
    })
    fmt.write_json(out / fmt.CARD_FILE, card)
    return score(seed, out)


def score(seed: Seed, folder: Path) -> dict[str, Any]:
    """Score a built seed by its protocol and write the figures, the protocol and the data into its
    card and README (``--rescore`` runs this alone: the weights are never touched)."""
    from adapterhub.compose.folder import save
    from adapterhub.compose.workflows.data import load_dataset
    from adapterhub.compose.workflows.reproduce import run_protocol

    labels = list(load_dataset(f"{seed.dataset}:train").labels or []) or None
    protocol = seed_protocol(seed, labels)
    result = run_protocol(folder, protocol, progress=False)
    metrics = dict(result.metrics)
    if protocol.scoring != "argmax-head":  # the bare base on the same protocol, so the gain is visible
        bare = run_protocol(folder, protocol, progress=False, adapters=False).metrics
        metrics["base_perplexity" if "perplexity" in bare else "base_accuracy"] = bare.get("perplexity",
                                                                                           bare.get("accuracy"))
    card = fmt.read_json_object(folder / fmt.CARD_FILE)
    card["metrics"] = metrics
    card["evaluation"] = {"protocol": result.protocol,
                          **({"confusion_matrix": result.confusion_matrix} if result.confusion_matrix else {})}
    data = protocol.data
    card.setdefault("data", {})["test"] = {
        "source": data.ref, "sha256": result.dataset_sha256, "examples": result.n_examples,
        "sample": f"seeded sample of {data.sample}" if data.sample else "all",
        "deduplicated": "test examples verbatim in the train split are dropped",
    }
    card["data"].pop("eval", None)
    training = card.get("training") or {}
    if "trainable_parameters" in training:  # one count: what trains (LoRA-FA saves its frozen A as well)
        card["trainable_parameters"] = training["trainable_parameters"]
        header = fmt.check_safetensors_file(folder / fmt.WEIGHTS_FILE)
        card["saved_parameters"] = sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    fmt.write_json(folder / fmt.CARD_FILE, card)
    (folder / fmt.README_FILE).write_text(save.render_readme(card))
    resave_metadata(folder, seed.base)
    return fmt.read_json_object(folder / fmt.CARD_FILE)


def _body(readme: str) -> str:
    """A README without its front matter (the ``---`` block it opens with, if any)."""
    if readme.startswith("---\n"):
        end = readme.find("\n---\n", 3)
        if end != -1:
            return readme[end + len("\n---\n"):]
    return readme


def resave_metadata(folder: Path, base: str) -> None:
    """Name the base by its Hub id in a seed folder's metadata, weights untouched.

    ``base`` is the seed's catalogue name. An adapter folder's ``adapter_config.json`` records the id
    as ``base_model_name_or_path``; its card gains ``base_model.id`` (``name_or_path`` stays, unless
    it is a path on the machine that built it, then it becomes the id, in the README's text too); its
    README gets the Hub's front matter before the text it already has. A recipe folder (``composition.json``) gets the
    same for its card and README and for each adapter folder it carries.
    """
    from adapterhub.compose.folder import save
    from adapterhub.compose.workflows.catalog import hub_id

    base_id = hub_id(base)
    if base_id is None:
        raise ValueError(f"{folder.name}: {base!r} is not a catalogue base model")
    config_path = folder / fmt.CONFIG_FILE
    if config_path.is_file():
        config = fmt.read_json_object(config_path)
        if config.get("base_model_name_or_path") != base_id:
            fmt.write_json(config_path, {**config, "base_model_name_or_path": base_id})
    card = fmt.read_json_object(folder / fmt.CARD_FILE)
    named = dict(card.get("base_model") or {})
    stale = named.get("name_or_path")  # a path on the building machine, named in the README's text too
    stale = str(stale) if stale and Path(str(stale)).is_absolute() else None
    if stale or not named.get("name_or_path"):
        named["name_or_path"] = base_id
    named["id"] = base_id
    if named != card.get("base_model"):
        card["base_model"] = named
        fmt.write_json(folder / fmt.CARD_FILE, card)
    readme = folder / fmt.README_FILE
    body = _body(readme.read_text() if readme.is_file() else f"# {folder.name}\n")
    text = save.front_matter(card) + (body.replace(f"`{stale}`", f"`{base_id}`") if stale else body)
    if not readme.is_file() or readme.read_text() != text:
        readme.write_text(text)
    recipe = folder / fmt.RECIPE_FILE
    if recipe.is_file():
        for entry in fmt.read_json_object(recipe).get("adapters", {}).values():
            resave_metadata(folder / entry["folder"], base)


def resave_all(root: Path) -> list[Path]:
    """``resave_metadata`` over every committed seed folder and recipe under ``root``."""
    from build_recipes import RECIPES

    done = []
    for name, base in [(s.name, s.base) for s in SEEDS] + [(r.name, r.base) for r in RECIPES]:
        if (root / name / fmt.CARD_FILE).is_file():
            resave_metadata(root / name, base)
            done.append(root / name)
    return done


def seed_table(root: Path) -> str:
    """The README's table of seed adapters, from their cards."""
    lines = ["| adapter | base | method | data (test examples) | metric | trainable params | train time |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for seed in SEEDS:
        path = root / seed.name / fmt.CARD_FILE
        if not path.is_file():
            continue
        card = fmt.read_json_object(path)
        m = card.get("metrics")
        if not m:
            continue
        if "perplexity" in m:
            metric = f"perplexity {m['perplexity']:.1f} (base {m['base_perplexity']:.1f})" if "base_perplexity" in m else f"perplexity {m['perplexity']:.1f}"
        elif "base_accuracy" in m:
            metric = f"accuracy {m['accuracy']:.3f} (base {m['base_accuracy']:.3f}), macro-F1 {m['macro_f1']:.3f}"
        else:
            metric = f"accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}"
        train = card["training"]
        lines.append(f"| `{NAMESPACE}/{seed.name}` | {seed.base} | {seed.method} | {seed.dataset} "
                     f"({card['data']['test']['examples']}) | {metric} | {train['trainable_parameters']:,} "
                     f"({train['trainable_percent']:.2f} %) | {train['time_s'] / 60:.1f} min |")
    from build_recipes import RECIPES

    for spec in RECIPES:
        path = root / spec.name / fmt.CARD_FILE
        if not path.is_file():
            continue
        card = fmt.read_json_object(path)
        news = card["evaluations"][0]["metrics"]
        experts = ", ".join(f"`{n}`" for n in card["experts_alone"])
        metric = (f"Friends perplexity {card['metrics']['perplexity']:.1f}, BBC News accuracy {news['accuracy']:.3f} "
                  f"(over {experts})")
        train = card["training"]
        lines.append(f"| `{NAMESPACE}/{spec.name}` | {spec.base} | route (recipe) | friends + bbc-news "
                     f"({card['data']['test']['examples']} + {card['evaluations'][0]['examples']}) | {metric} | "
                     f"{train['trainable_parameters']:,} ({train['trainable_percent']:.2f} %) | "
                     f"{train['time_s'] / 60:.1f} min |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="build only these seeds (repeatable)")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--table", action="store_true", help="print the README's table of seeds and exit")
    parser.add_argument("--rescore", action="store_true",
                        help="only re-score the built seeds by their protocols (cards and READMEs; weights untouched)")
    parser.add_argument("--resave-metadata", action="store_true",
                        help="only rewrite the base's Hub id into the built folders' metadata (weights untouched)")
    args = parser.parse_args(argv)
    if args.table:
        print(seed_table(args.out))
        return 0
    if args.resave_metadata:
        for folder in resave_all(args.out):
            print(f"resaved {folder.name}", file=sys.stderr)
        return 0
    import torch

    torch.set_num_threads(2)
    chosen = [s for s in SEEDS if not args.only or s.name in args.only]
    if args.rescore:
        from build_recipes import RECIPES, score_route

        for seed in chosen:
            print(json.dumps({"name": seed.name, "metrics": score(seed, args.out / seed.name)["metrics"]}), flush=True)
        for spec in RECIPES:
            if not args.only or spec.name in args.only:
                print(json.dumps({"name": spec.name, "metrics": score_route(spec, args.out)["metrics"]}), flush=True)
        return 0
    for i, seed in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {seed.name}: {seed.method} on {seed.base} / {seed.dataset}", file=sys.stderr)
        card = build_one(seed, args.out)
        print(json.dumps({"name": seed.name, "metrics": card["metrics"]}), flush=True)
    from build_recipes import main_for  # the composition seeds, built on the adapter seeds above

    for card in main_for(args.only, args.out):
        print(json.dumps({"name": card["name"], "metrics": card["metrics"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
