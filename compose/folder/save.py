"""Writing an adapter folder: ours (config, weights, card, README) or PEFT's (config, weights).

The base is recorded by its Hugging Face Hub id wherever one is known (``recorded_base_id``), so a
folder names its base the same way on every machine; the README opens with the Hub's model-card
metadata (``front_matter``).

The folder is filled in a temporary sibling and renamed into place (``adapterhub.format``), so a
crash mid-save leaves the old folder or none, never half of one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from adapterhub.compose.core.fingerprint import fingerprint
from adapterhub.compose.folder.adapters_save import save_adapters_folder
from adapterhub.compose.folder.keys import adapter_state_dict
from adapterhub.compose.tuners import tuner_for_config
from adapterhub.compose.tuners.site import iter_sites
from adapterhub.compose.workflows.catalog import hub_id
from adapterhub.errors import InvalidAdapterError
from adapterhub.eval_protocol import SCORED_TOKENS, card_results, model_index
from adapterhub.format import CARD_FILE, CONFIG_FILE, README_FILE, WEIGHTS_FILE, atomic_folder, write_json
from adapterhub.vocab import METHODS, TRAINING_PRESETS, task_named

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

FORMATS = ("adapterhub", "peft", "adapters")  # ours, PEFT's, AdapterHub's adapters'

# what a loaded adapter's card says it is for, kept when the adapter is saved again (a recipe's
# copy of a classifier must still name its task and labels, or it cannot be loaded to classify)
CARRIED_CARD_FIELDS = ("task", "labels", "description", "tags", "license")


def save_adapter(model: AdapterModel, name: str, path: Path, format: str = "adapterhub", card: dict | None = None,
                 base_model_id: str | None = None) -> Path:
    if format not in FORMATS:
        raise InvalidAdapterError(f"unknown folder format {format!r}; use one of {FORMATS}")
    config = model._require(name)  # AdapterNotFoundError naming the loaded adapters
    method = tuner_for_config(config)
    if format == "peft" and config.peft_type is None:
        raise InvalidAdapterError(f"adapter {name!r} is a {method.name} adapter, which PEFT cannot load; use format='adapterhub'")
    base_id = recorded_base_id(model, config.base_model_name_or_path, base_model_id)
    if format == "adapters":
        return save_adapters_folder(model, name, Path(path), base_id)
    tensors = adapter_state_dict(model, name)
    path = Path(path)
    with atomic_folder(path) as tmp:
        write_json(tmp / CONFIG_FILE, {**config.to_dict(), **({"base_model_name_or_path": base_id} if base_id else {})})
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if format == "adapterhub":
            carried = model.ah.card_facts.get(name) or {}
            full_card = build_card(model, name, tensors, {**carried, **(card or {})}, base_id)
            write_json(tmp / CARD_FILE, full_card)
            (tmp / README_FILE).write_text(render_readme(full_card))
    return path


# what a Hub id looks like ("org/name" or "name"); a relative path of a folder that exists is not one
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def recorded_base_id(model, configured: str | None, explicit: str | None = None) -> str | None:
    """The Hub id a folder records as ``base_model_name_or_path``, or None to keep the configured value.

    In order: ``explicit`` (the caller's ``base_model_id=``; a catalogue name becomes its id); the
    catalogue's id for the configured name or path or the model's ``config._name_or_path`` (a
    catalogue name, id, or one of its local folders); else whichever of those two is not a local
    path and reads as a Hub id. A base loaded from a folder of the user's own, not in the catalogue,
    gets None: the folder keeps the configured value (the path), as it always has.
    """
    if explicit:
        return hub_id(explicit) or explicit
    loaded = getattr(getattr(model, "config", None), "_name_or_path", None) or None
    candidates = [c for c in (configured, loaded) if c]
    for candidate in candidates:
        known = hub_id(candidate)
        if known:
            return known
    for candidate in candidates:
        if HUB_ID.fullmatch(str(candidate)) and not Path(str(candidate)).expanduser().exists():
            return str(candidate)
    return None


def build_card(model: AdapterModel, name: str, tensors: dict[str, torch.Tensor], extra: dict | None,
               base_id: str | None = None) -> dict[str, Any]:
    config = model.ah.configs[name]
    sites = site_paths(model, name)
    card: dict[str, Any] = {
        "format_version": 1,
        "name": name,
        "method": tuner_for_config(config).name,
        "base_model": {  # name_or_path: what adapter_config.json records (the id when known)
            "name_or_path": base_id or config.base_model_name_or_path,
            "fingerprint": fingerprint(model, sites),
            **({"id": base_id} if base_id else {}),
        },
        "config_extra": config.local_dict(),
        # what trains, as PEFT's print_trainable_parameters counts it: LoRA-FA saves its frozen A too
        "trainable_parameters": int(sum(t.numel() for k, t in tensors.items()
                                        if not (getattr(config, "lora_fa", False) and ".lora_A." in k))),
        "saved_parameters": int(sum(t.numel() for t in tensors.values())),
        "size_bytes": int(sum(t.numel() * t.element_size() for t in tensors.values())),
        "sites": len(sites),
    }
    if getattr(config, "lora_fa", False):
        card["training"] = {"lora_fa": True}
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(card.get(key), dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    return card


_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _yaml_scalar(value: Any) -> str:
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def front_matter(card: dict[str, Any]) -> str:
    """The Hugging Face Hub's model-card metadata for a card, between ``---`` lines."""
    base = card.get("base_model") or {}
    meta: list[tuple[str, Any]] = []
    if isinstance(base, dict) and base.get("id"):
        meta.append(("base_model", base["id"]))
    meta.append(("library_name", "peft" if peft_loads(card) else "adapterhub"))
    task = task_named(card.get("task")) if isinstance(card.get("task"), str) else None
    if task is not None:
        meta.append(("pipeline_tag", task.pipeline_tag))
    if isinstance(card.get("license"), str):
        meta.append(("license", card["license"]))
    tags = ["adapterhub", card.get("method"), *(card.get("tags") or [])]
    meta.append(("tags", list(dict.fromkeys(str(t) for t in tags if t))))
    lines = ["---"]
    for key, value in meta:
        shown = f"[{', '.join(_yaml_scalar(v) for v in value)}]" if isinstance(value, list) else _yaml_scalar(value)
        lines.append(f"{key}: {shown}")
    index = _model_index(card)
    if index:
        import yaml

        lines.append(yaml.safe_dump({"model-index": index}, sort_keys=False, allow_unicode=True).rstrip())
    return "\n".join(lines + ["---", ""])


def _model_index(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The Hub's ``model-index`` from the card's evaluations that carry a protocol (the base model's own
    figures, ``base_*``, describe the base, not this adapter, and stay out)."""
    results = [(protocol, {k: v for k, v in recorded["metrics"].items() if not k.startswith("base_")})
               for protocol, recorded in card_results(card)]
    return model_index(str(card.get("name") or "adapter"), card, results)


def peft_loads(card: dict[str, Any]) -> bool:
    """Whether PEFT has the card's method (a bottleneck adapter is AdapterHub's, not PEFT's)."""
    name = str(card.get("method") or "")
    info = METHODS.get(TRAINING_PRESETS.get(name, name))
    return info is None or info.peft_type is not None


def render_readme(card: dict[str, Any]) -> str:
    named = card.get("base_model", {})
    base = named.get("name_or_path") or named.get("id") or named["fingerprint"]["architecture"]
    if named.get("id") and Path(str(base)).is_absolute():  # a path on the machine that saved it
        base = named["id"]
    lines = [
        front_matter(card) + f"# {card.get('name')}",
        "",
        f"A **{card['method']}** adapter for `{base}`, in adapterhub's folder format "
        + ("(PEFT-compatible `adapter_config.json` and `adapter_model.safetensors`)." if peft_loads(card) else
           "(PEFT has no such method; `save_adapter(name, path, format=\"adapters\")` writes it for AdapterHub's "
           "`adapters`)."),
        "",
        f"- trainable parameters: {card['trainable_parameters']:,}",
        f"- size: {card['size_bytes'] / 1024:.1f} KiB",
    ]
    if card.get("task"):
        lines.append(f"- task: {card['task']}")
    if card.get("metrics"):
        lines += ["", "## Metrics", ""] + [f"- {k}: {v}" for k, v in card["metrics"].items()]
    if card.get("data"):
        lines += ["", "## Data", "", "```json", json.dumps(card["data"], indent=2), "```"]
    lines += _protocol_lines(card)
    lines += ["", "## Use", "", "```python", "import adapterhub as ah", "am = ah.AdapterModel(base_model)",
              f"am.load_adapter('path/to/this/folder', name={card.get('name')!r}, set_active=True)", "```", ""]
    return "\n".join(lines)


def _protocol_lines(card: dict[str, Any]) -> list[str]:
    """How the figures above were scored, in words an outsider can follow without our code."""
    results = card_results(card)
    if not results:
        return []
    lines = ["", "## How the figures were scored", ""]
    for protocol, _recorded in results:
        lines.append(f"- {protocol.describe()}; scored tokens: {SCORED_TOKENS[protocol.scoring]}")
        if protocol.template is not None:
            t = protocol.template
            lines += [f"  - prompt template (sha256 `{t.sha256[:12]}`), the article cut to its first {t.max_chars} "
                      f"characters, no chat template, each answer joined by {t.answer_prefix!r}; the choices: "
                      f"{', '.join(protocol.labels or ())}:", "", "    ```text", *("    " + x for x in t.text.splitlines()),
                      "    ```", ""]
    lines += ["", "Re-make them with `adapterhub eval REF` (REF: this adapter's registry reference or folder; the "
              "card's protocol is the default) and check them with `adapterhub eval --verify REF`."]
    return lines


def site_paths(model: AdapterModel, name: str) -> list[str]:
    return [p for p, s in iter_sites(model) if name in s.ah_adapters]
