"""The UI's calls into the engine: load a base with adapters, predict base vs adapted, evaluate.

Thin wrappers over ``adapterhub.compose`` (nothing here the CLI could not do), shaped for pages:
plain dicts in and out, one loaded model per (base, adapters, composition source) kept by the
caller's cache. Fuse and Route run either fresh, untrained layers (said so in the answer) or the
layers of a source folder: a fusion or router folder (``save_fusion``/``save_router``) or a
composition recipe (``save_composition``), pulled from the registry when given as a reference.

>>> pg = load_playground("minilm-l6", {"sent": Path("snapshot/1.0.0")})   # doctest: +SKIP
>>> predict(pg, "a fine film", "single", ["sent"])["adapted"]            # doctest: +SKIP
{'neg': 0.12, 'pos': 0.88}
>>> predict(pg2, "a fine film", "fuse")["blocks"][0]["trained"]          # doctest: +SKIP
False
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapterhub import format as fmt
from adapterhub.errors import CompositionError, IncompatibleAdapterError, InvalidAdapterError
from adapterhub.vocab import CLASSIFICATION

MODES = ("single", "stack", "average", "fuse", "route")
LAYER_MODES = {"fuse": "Fuse", "route": "Route"}  # the modes that run trainable per-site layers
SOURCE_KINDS = {"ADAPTER_FUSION": "fusion", "ADAPTER_ROUTER": "router"}  # peft_type -> kind of folder
MAX_NEW_TOKENS = 24


@dataclass
class Playground:
    model: object  # AdapterModel
    tokenizer: object
    task: str  # a name in adapterhub.vocab.TASKS
    labels: list[str] | None
    names: list[str]  # the picked adapters, in order
    loaded: object = None  # the block a source folder brought (Block or adapter name), or None


def adapter_name(ref: str) -> str:
    """An engine-safe adapter name for a reference (``acme/sent-1@1.0.0`` -> ``acme_sent_1_1_0_0``)."""
    return re.sub(r"\W", "_", ref)


def source_folder(text: str, pull: Callable[[str], Path]) -> Path:
    """The folder a composition source names: a local folder as it is, a registry reference pulled."""
    from adapterhub.registry.reference import looks_like_reference

    text = text.strip()
    if Path(text).expanduser().is_dir():
        return Path(text).expanduser()
    if looks_like_reference(text):
        return pull(text)
    raise InvalidAdapterError(f"{text!r} is neither a folder here nor a registry reference (namespace/name)")


def source_kind(folder: Path) -> str:
    """``"recipe"`` (composition.json), ``"fusion"`` or ``"router"`` (by the folder's peft_type)."""

    if (folder / fmt.RECIPE_FILE).is_file():
        return "recipe"
    found = fmt.read_json_object(folder / fmt.CONFIG_FILE).get("peft_type") if (folder / fmt.CONFIG_FILE).is_file() else None
    if found not in SOURCE_KINDS:
        raise InvalidAdapterError(f"{folder} is not a fusion, router or composition folder: it has no "
                                  f"{fmt.RECIPE_FILE} and its peft_type is {found!r}, not one of "
                                  f"{', '.join(SOURCE_KINDS)}")
    return SOURCE_KINDS[found]


def _recipe_folders(folder: Path, pull: Callable[[str], Path] | None = None) -> dict[str, Path]:
    """A recipe's own adapters (name -> folder; reference-only ones are pulled) for the task check.

    ``pull`` is the session's: a shared UI must pull a recipe's references with the visitor's
    token, so one the visitor may not read stops here instead of loading with the host's login.
    """
    from adapterhub.compose.core.hub import pull_from_registry

    found = {}
    for name, entry in (fmt.read_json_object(folder / fmt.RECIPE_FILE).get("adapters") or {}).items():
        own = folder / str(entry.get("folder") or name)
        ref = entry.get("reference") or name
        found[name] = own if own.is_dir() else (pull or pull_from_registry)(ref)
    return found


def _named_as_layers(folders: dict[str, Path], source: Path) -> dict[str, Path]:
    """The picked adapters named as a fusion/router folder names them: already so, or matched in order."""
    from adapterhub.compose.composition.blocks import block_from_dict, leaves_of

    leaves = list(dict.fromkeys(leaves_of(block_from_dict(fmt.read_json_object(source / fmt.CONFIG_FILE).get("composition")))))
    if set(leaves) <= set(folders):
        return folders
    if len(leaves) != len(folders):
        raise IncompatibleAdapterError(
            f"{source} combines {len(leaves)} adapters ({', '.join(leaves)}) but {len(folders)} were picked: "
            f"pick {len(leaves)}, in that order")
    return dict(zip(leaves, folders.values(), strict=True))


def load_playground(base: str, folders: dict[str, Path], source: Path | None = None,
                    pull: Callable[[str], Path] | None = None) -> Playground:
    """The base (catalogue name or folder) with every adapter folder attached under its name, and
    the layers (or whole recipe) of ``source`` on top.

    The task and labels come from the adapters' cards; all of them must agree. A fusion or router
    folder names its adapters: the picked ones take those names, in the order picked. ``pull``
    fetches a recipe's reference-only adapters (default: the engine's own client).
    """
    from adapterhub.compose.core.model import AdapterModel
    from adapterhub.compose.workflows.base import load_base, load_tokenizer
    from adapterhub.compose.workflows.evaluate import adapter_task

    kind = source_kind(source) if source is not None else None
    if kind in ("fusion", "router"):
        folders = _named_as_layers(folders, source)
    own = _recipe_folders(source, pull) if kind == "recipe" else {}
    declared = {name: adapter_task(folder) for name, folder in {**own, **folders}.items()}
    if not declared:
        raise IncompatibleAdapterError("pick at least one adapter")
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
    loaders = {"recipe": model.load_composition, "fusion": model.load_fusion, "router": model.load_router}
    loaded = loaders[kind](source) if kind else None
    return Playground(model.eval(), tokenizer, task, labels, list(folders), loaded)


def composition(pg: Playground, mode: str, names: list[str] | None = None):
    """The block ``mode`` runs: built from the picked adapters, or for Fuse/Route the source's block
    (when one was loaded) else a fresh one whose untrained layers are created here."""
    from adapterhub.compose.composition.blocks import BLOCKS, Average, Stack, blocks_in

    names = pg.names if names is None else names
    if mode in LAYER_MODES and pg.loaded is not None:
        kind = BLOCKS[LAYER_MODES[mode]]
        if not blocks_in(pg.loaded, kind):
            raise CompositionError(f"the loaded composition {pg.loaded!r} has no {kind.__name__} block: "
                                   f"choose its mode, or clear the source for a fresh {kind.__name__}")
        return pg.loaded
    if not names:
        raise IncompatibleAdapterError("pick at least one adapter")
    if mode == "single" and len(names) != 1:
        raise IncompatibleAdapterError(f"single mode runs one adapter, {len(names)} were picked: choose stack")
    if mode in LAYER_MODES:
        block = BLOCKS[LAYER_MODES[mode]](*names)
        (pg.model.add_fusion if mode == "fuse" else pg.model.add_router)(block)  # keeps layers already there
        return block
    if mode not in MODES:
        raise CompositionError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    return {"single": lambda: names[0], "stack": lambda: Stack(*names), "average": lambda: Average(*names)}[mode]()


def activate(pg: Playground, mode: str, names: list[str] | None = None):
    """Activate the composition of ``mode`` and return it."""
    block = composition(pg, mode, names)
    pg.model.set_active(block)
    return block


def block_stats(pg: Playground, active) -> list[dict]:
    """What each Fuse and Route block in ``active`` did in the last forward, per site, for a heatmap.

    Fuse: the mean attention over its children; Route: the share of tokens whose first choice is
    each child. ``trained`` is False for the fresh layers `composition` made (no source loaded).
    """
    import torch

    from adapterhub.compose.composition.blocks import Fuse, Route, blocks_in

    def shares(choice: torch.Tensor, n: int) -> torch.Tensor:
        return torch.bincount(choice.reshape(-1), minlength=n) / choice.numel()

    stats = []
    for kind, read in ((Fuse, pg.model.fusion_weights), (Route, pg.model.router_choices)):
        for block in blocks_in(active, kind):
            per_site = {site: values if kind is Fuse else shares(values, len(block.children))
                        for site, values in read(block).items()}
            stats.append({"kind": kind.__name__, "block": repr(block), "trained": pg.loaded is not None,
                          "children": [c if isinstance(c, str) else repr(c) for c in block.children],
                          "value": "attention" if kind is Fuse else "share of tokens",
                          "sites": {site: [round(float(v), 4) for v in t.tolist()] for site, t in per_site.items()}})
    return stats


def _batch(pg: Playground, text: str) -> dict:
    batch = pg.tokenizer([text], return_tensors="pt", truncation=True, max_length=256)
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _run(pg: Playground, text: str):
    import torch

    batch = _batch(pg, text)
    with torch.inference_mode():
        if pg.task == CLASSIFICATION.name:
            probs = torch.softmax(pg.model(**batch).logits[0].float(), -1).tolist()
            return {label: round(p, 4) for label, p in zip(pg.labels, probs, strict=True)}
        out = pg.model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                pad_token_id=pg.tokenizer.pad_token_id)
        return pg.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def _forward(pg: Playground, text: str) -> None:
    """One forward over the text alone: generation's last step sees one token, the heatmap wants all."""
    import torch

    with torch.inference_mode():
        pg.model(**_batch(pg, text))


def predict(pg: Playground, text: str, mode: str, names: list[str] | None = None) -> dict:
    """``{"task", "base", "adapted", "composition", "blocks"}``: label probabilities (classifiers) or
    generated text (LMs) with and without the adapters; ``blocks`` as `block_stats` gives them."""
    if not text.strip():
        raise IncompatibleAdapterError("type some text first")
    active = activate(pg, mode, names)
    with pg.model.disable_adapters():
        base = _run(pg, text)
    adapted = _run(pg, text)
    if mode in LAYER_MODES and pg.task != CLASSIFICATION.name:
        _forward(pg, text)
    return {"task": pg.task, "base": base, "adapted": adapted, "composition": repr(active),
            "blocks": block_stats(pg, active)}


def save_upload(name: str, data: bytes) -> Path:
    """An uploaded data file written to a temp file with its suffix (the loader reads by suffix)."""
    suffix = Path(name).suffix.lower() or ".jsonl"
    with tempfile.NamedTemporaryFile("wb", suffix=suffix, prefix="adapterhub-upload-", delete=False) as f:
        f.write(data)
    return Path(f.name)


def evaluate(folder: Path, base: str | None = None, data: str | Path | None = None, *, scoring: str | None = None,
             sample: int | None = None, sample_seed: int | None = None, max_length: int | None = None,
             batch_size: int | None = None, pull: Callable[[str], Path] | None = None,
             on_stage=lambda text, fraction: None):
    """Evaluate an adapter folder by its card's protocol, with what the caller set otherwise (None
    keeps the card's; each other value is recorded in the result's protocol as an override). ``data``
    is a built-in ``name:split`` or a file's path; a card without a protocol needs ``base`` and ``data``.
    ``on_stage`` hears the progress."""
    from adapterhub.compose.workflows.reproduce import evaluate_adapter

    on_stage("loading the base and scoring the data", 0.3)
    return evaluate_adapter(folder, base, data, scoring=scoring, sample=sample, sample_seed=sample_seed,
                            max_length=max_length, batch_size=batch_size, progress=False, pull=pull)


def reproduce(folder: Path, evaluation: dict | None = None, pull: Callable[[str], Path] | None = None) -> list[dict]:
    """Re-run the card's recorded figures (``evaluation`` None: each of them, headline first) or one
    registry evaluation (an EvaluationOut with a protocol) exactly by its protocol; each re-run as
    ``Verification.to_dict()`` (``reproduced``, ``differences``, ``result``)."""
    from adapterhub.compose.workflows.reproduce import verify_card, verify_record
    from adapterhub.eval_protocol import EvalProtocol
    from adapterhub.web.eval_views import recorded_of

    if evaluation is None:
        runs = verify_card(folder, progress=False, pull=pull)
    else:
        runs = [verify_record(folder, EvalProtocol.from_dict(evaluation["protocol"]), recorded_of(evaluation),
                              progress=False, pull=pull)]
    return [run.to_dict() for run in runs]
