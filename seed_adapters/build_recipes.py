"""The composition seed: a Route (mixture of adapter experts) over two SmolLM2 seed adapters.

``smollm2-friends-news-route`` routes each token, at every adapted site, to one of two experts
already on the hub: ``smollm2-friends-lora`` (Friends dialogue) and ``smollm2-bbc-news-instruct-lora``
(BBC News topic as instruction following). Only the routers train (the experts stay frozen), on
an even mixture of the two experts' training splits. The claim it has to earn: one composition
serves both tasks about as well as each task's own expert, and its router tells the tasks apart.
Its card records, on the same fixed test samples as the experts' cards, Friends perplexity and
BBC constrained-answer accuracy for the routed model and for each expert alone, and the share of
tokens each task sends to its own expert.

Built by ``python seed_adapters/build.py`` after the adapter seeds it names (``--only
smollm2-friends-news-route`` rebuilds just this one from the committed experts).
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterhub import format as fmt

NAMESPACE = "adapterhub"
EXPERT_VERSION = "1.0.0"


@dataclass(frozen=True)
class RouteSeed:
    name: str
    base: str
    experts: tuple[str, str]  # (lm expert, instruction expert), seed folder names
    mixture_per_task: int
    steps: int
    batch_size: int
    lr: float
    max_length: int
    lm_test_sample: int
    instruct_test_sample: int
    description: str
    seed: int = 0


RECIPES: tuple[RouteSeed, ...] = (
    RouteSeed("smollm2-friends-news-route", "smollm2-135m",
              ("smollm2-friends-lora", "smollm2-bbc-news-instruct-lora"), mixture_per_task=400, steps=30,
              batch_size=8, lr=1e-2, max_length=160, lm_test_sample=200, instruct_test_sample=100,
              description="Route (top-1 per token) over the Friends dialogue and BBC News instruction experts"),
)


def _mixture(lm_train, instruct_train, per_task: int, seed: int):
    """An even, seeded mixture of the two experts' training splits (never their test splits)."""
    from adapterhub.compose.workflows.data import load_examples, seeded_sample

    rows = [{"text": e.text} for e in seeded_sample(lm_train, per_task, seed).examples]
    rows += [{"text": e.text} for e in seeded_sample(instruct_train, per_task, seed).examples]
    random.Random(seed).shuffle(rows)
    return load_examples(rows, "lm", name=f"mixture of {lm_train.name} and {instruct_train.name}")


def _token_share(model, route, tokenizer, texts: list[str], expert: int, max_length: int) -> float:
    """Share of (non-padding) tokens whose first choice is ``expert``, over every router."""
    import torch

    from adapterhub.compose.workflows.evaluate import encode

    hits = total = 0
    with torch.inference_mode():
        for start in range(0, len(texts), 8):
            batch = encode(tokenizer, texts[start:start + 8], max_length, torch.device("cpu"))
            model(**batch)
            mask = batch["attention_mask"].bool()
            for choice in model.router_choices(route).values():
                hits += int((choice[mask] == expert).sum())
                total += int(mask.sum())
    return round(hits / max(1, total), 4)


def build_route(spec: RouteSeed, root: Path) -> dict[str, Any]:
    import torch

    from adapterhub.compose.composition.blocks import Route
    from adapterhub.compose.core.model import AdapterModel
    from adapterhub.compose.workflows.base import load_base, load_tokenizer
    from adapterhub.compose.workflows.catalog import hub_id, resolve_base_model
    from adapterhub.compose.workflows.data import load_dataset
    from adapterhub.compose.workflows.evaluate import default_device
    from adapterhub.compose.workflows.instruct import as_instructions
    from adapterhub.compose.workflows.training import TRAINING_DEFAULTS, fit

    lm_expert, instruct_expert = spec.experts
    lm_card = fmt.read_json_object(root / lm_expert / fmt.CARD_FILE)
    instruct_card = fmt.read_json_object(root / instruct_expert / fmt.CARD_FILE)
    labels = instruct_card["evaluation"]["protocol"]["labels"]
    lm_dataset = lm_card["data"]["train"]["source"].split(":")[0]
    news_dataset = instruct_card["data"]["train"]["source"].split(":")[0]

    base = resolve_base_model(spec.base, say=lambda m: print(m, file=sys.stderr))
    tokenizer = load_tokenizer(base)
    device = default_device()
    model = AdapterModel(load_base(base, "lm", tokenizer=tokenizer)).to(device)
    for expert in spec.experts:
        model.load_adapter(root / expert, name=expert)
    route = Route(*spec.experts, top_k=1)
    torch.manual_seed(spec.seed)
    model.add_router(route)
    model.train_router(route)
    params = [p for p in model.parameters() if p.requires_grad]

    news_train = load_dataset(f"{news_dataset}:train")
    mixture = _mixture(load_dataset(f"{lm_dataset}:train"), as_instructions(news_train, labels),
                       spec.mixture_per_task, spec.seed)
    settings = {**TRAINING_DEFAULTS, "steps": spec.steps, "batch_size": spec.batch_size, "lr": spec.lr,
                "max_length": spec.max_length, "seed": spec.seed}
    started = time.perf_counter()
    losses, seconds = fit(model, tokenizer, mixture, None, params, settings, device, True, spec.name)
    model.eval()

    out = root / spec.name
    model.save_composition(out, active=route, name=spec.name)
    recipe = fmt.read_json_object(out / fmt.RECIPE_FILE)
    for expert, entry in recipe["adapters"].items():  # rebuildable from the hub alone
        entry["reference"] = entry.get("reference") or f"{NAMESPACE}/{expert}@{EXPERT_VERSION}"
    fmt.write_json(out / fmt.RECIPE_FILE, recipe)
    router_params = sum(p.numel() for p in params)
    card = {
        "name": spec.name,
        "description": spec.description,
        "method": "route",
        "task": lm_card["task"],
        "tags": ["composition", "route", "dialogue", "news", spec.base],
        "license": "apache-2.0",
        "base_model": {**lm_card["base_model"], "name_or_path": spec.base, "id": hub_id(spec.base)},
        "composition": route.to_dict(),
        "data": {
            "train": {"source": f"even mixture of {lm_dataset}:train and {news_dataset}:train as instructions",
                      "sha256": mixture.sha256, "examples": len(mixture)},
        },
        "recipe": {"trains": "routers only (experts frozen)", "steps": spec.steps, "batch_size": spec.batch_size,
                   "lr": spec.lr, "max_length": spec.max_length, "mixture_per_task": spec.mixture_per_task},
        "seed": spec.seed,
        "training": {"steps": spec.steps, "time_s": round(seconds, 3), "final_loss": losses[-1],
                     "trainable_parameters": router_params,
                     "trainable_percent": round(100 * router_params / sum(p.numel() for p in model.parameters()), 4),
                     "device": device.type},
        "build": {"script": "seed_adapters/build.py", "wall_time_s": round(time.perf_counter() - started, 1)},
    }
    fmt.write_json(out / fmt.CARD_FILE, card)
    return score_route(spec, root)


def score_route(spec: RouteSeed, root: Path) -> dict[str, Any]:
    """Score the built recipe, and each expert alone, by the experts' own card protocols (Friends
    perplexity, BBC News constrained answer), plus the share of tokens each task routes to its own
    expert; write them into the recipe's card and README (``--rescore``: the weights stay)."""
    from dataclasses import replace

    import torch

    from adapterhub.compose.core.model import AdapterModel
    from adapterhub.compose.workflows.base import load_base, load_tokenizer
    from adapterhub.compose.workflows.catalog import resolve_base_model
    from adapterhub.compose.workflows.reproduce import load_protocol_data, run_protocol
    from adapterhub.eval_protocol import card_protocol

    out = root / spec.name
    lm_expert, instruct_expert = spec.experts
    lm_protocol = card_protocol(fmt.read_json_object(root / lm_expert / fmt.CARD_FILE))
    news_protocol = card_protocol(fmt.read_json_object(root / instruct_expert / fmt.CARD_FILE))
    lm_protocol = replace(lm_protocol, data=replace(lm_protocol.data, sample=spec.lm_test_sample), batch_size=8)
    news_protocol = replace(news_protocol, data=replace(news_protocol.data, sample=spec.instruct_test_sample))

    def scores(folder: Path) -> tuple[dict, dict]:
        lm = run_protocol(folder, lm_protocol, progress=False)
        news = run_protocol(folder, news_protocol, progress=False)
        return lm, news

    routed_lm, routed_news = scores(out)
    experts = {}
    for expert in spec.experts:
        lm, news = scores(root / expert)
        experts[expert] = {"perplexity": lm.metrics["perplexity"], "news_accuracy": news.metrics["accuracy"],
                           "news_macro_f1": news.metrics["macro_f1"]}

    base = resolve_base_model(spec.base, say=lambda m: print(m, file=sys.stderr))
    tokenizer = load_tokenizer(base)
    model = AdapterModel(load_base(base, "lm", tokenizer=tokenizer))
    route = model.load_composition(out, set_active=True)
    model.eval()
    labels = list(news_protocol.labels)
    torch.manual_seed(spec.seed)
    share_lm = _token_share(model, route, tokenizer, load_protocol_data(lm_protocol).texts, 0, lm_protocol.max_length)
    prompts = [news_protocol.template.render(t, labels) for t in load_protocol_data(news_protocol).texts]
    share_news = _token_share(model, route, tokenizer, prompts, 1, spec.max_length)

    card = fmt.read_json_object(out / fmt.CARD_FILE)
    card["metrics"] = {"perplexity": routed_lm.metrics["perplexity"],
                       "token_share_to_own_expert_friends": share_lm, "token_share_to_own_expert_news": share_news}
    card["evaluation"] = {"protocol": routed_lm.protocol}
    card["evaluations"] = [{"kind": "constrained answer accuracy", "protocol": routed_news.protocol,
                            "source": news_protocol.data.ref, "sha256": routed_news.dataset_sha256,
                            "examples": routed_news.n_examples, "metrics": routed_news.metrics,
                            "confusion_matrix": routed_news.confusion_matrix}]
    card["experts_alone"] = experts
    card["data"]["test"] = {"source": lm_protocol.data.ref, "sha256": routed_lm.dataset_sha256,
                            "examples": routed_lm.n_examples, "sample": f"seeded sample of {spec.lm_test_sample}"}
    fmt.write_json(out / fmt.CARD_FILE, card)
    (out / fmt.README_FILE).write_text(render_readme(card))
    from build import resave_metadata  # the base's Hub id in every folder of the recipe, and the front matter

    resave_metadata(out, spec.base)
    return fmt.read_json_object(out / fmt.CARD_FILE)


def render_readme(card: dict[str, Any]) -> str:
    experts = card["experts_alone"]
    names = list(experts)
    news = card["evaluations"][0]
    rows = [f"| routed (this recipe) | {card['metrics']['perplexity']:.1f} | {news['metrics']['accuracy']:.3f} |"]
    rows += [f"| `{n}` alone | {experts[n]['perplexity']:.1f} | {experts[n]['news_accuracy']:.3f} |" for n in names]
    return "\n".join([
        f"# {card['name']}",
        "",
        f"A composition recipe for `{card['base_model']['name_or_path']}`: {card['description']}.",
        "Only the routers were trained (the experts are the hub's own seed adapters, frozen), on an even",
        f"mixture of both experts' training splits ({card['data']['train']['examples']} examples).",
        "",
        f"| model | Friends perplexity ({card['data']['test']['examples']} test lines) | "
        f"BBC News constrained accuracy ({news['examples']} test articles) |",
        "| --- | ---: | ---: |",
        *rows,
        "",
        f"Tokens routed to their own task's expert: Friends {card['metrics']['token_share_to_own_expert_friends']:.1%},"
        f" news prompts {card['metrics']['token_share_to_own_expert_news']:.1%}.",
        "",
        "## Use",
        "",
        "```python",
        "import adapterhub as ah",
        "am = ah.AdapterModel(base_model)",
        "am.load_composition('path/to/this/folder', set_active=True)",
        "```",
        "",
        "Or `adapterhub eval <this folder> --base smollm2-135m --data friends:test`.",
        "",
    ])


def main_for(names: list[str] | None, root: Path) -> list[dict[str, Any]]:
    cards = []
    for spec in RECIPES:
        if names and spec.name not in names:
            continue
        print(f"[recipe] {spec.name}", file=sys.stderr)
        cards.append(build_route(spec, root))
    return cards
