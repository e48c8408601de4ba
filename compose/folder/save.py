"""Writing an adapter folder: ours (config, weights, card, README) or PEFT's (config, weights).

The folder is filled in a temporary sibling and renamed into place (``adapterhub.format``), so a
crash mid-save leaves the old folder or none, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from adapterhub.compose.core.fingerprint import fingerprint
from adapterhub.compose.folder.keys import adapter_state_dict
from adapterhub.compose.tuners import tuner_for_config
from adapterhub.compose.tuners.site import iter_sites
from adapterhub.errors import InvalidAdapterError
from adapterhub.format import CARD_FILE, CONFIG_FILE, README_FILE, WEIGHTS_FILE, atomic_folder, write_json

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

FORMATS = ("adapterhub", "peft")

# what a loaded adapter's card says it is for, kept when the adapter is saved again (a recipe's
# copy of a classifier must still name its task and labels, or it cannot be loaded to classify)
CARRIED_CARD_FIELDS = ("task", "labels", "description", "tags", "license")


def save_adapter(model: AdapterModel, name: str, path: Path, format: str = "adapterhub", card: dict | None = None) -> Path:
    if format not in FORMATS:
        raise InvalidAdapterError(f"unknown folder format {format!r}; use one of {FORMATS}")
    config = model.ah.configs[name]
    method = tuner_for_config(config)
    if format == "peft" and config.peft_type is None:
        raise InvalidAdapterError(f"adapter {name!r} is a {method.name} adapter, which PEFT cannot load; use format='adapterhub'")
    tensors = adapter_state_dict(model, name)
    path = Path(path)
    with atomic_folder(path) as tmp:
        write_json(tmp / CONFIG_FILE, config.to_dict())
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if format == "adapterhub":
            carried = model.ah.card_facts.get(name) or {}
            full_card = build_card(model, name, tensors, {**carried, **(card or {})})
            write_json(tmp / CARD_FILE, full_card)
            (tmp / README_FILE).write_text(render_readme(full_card))
    return path


def build_card(model: AdapterModel, name: str, tensors: dict[str, torch.Tensor], extra: dict | None) -> dict[str, Any]:
    config = model.ah.configs[name]
    sites = site_paths(model, name)
    card: dict[str, Any] = {
        "format_version": 1,
        "name": name,
        "method": tuner_for_config(config).name,
        "base_model": {
            "name_or_path": config.base_model_name_or_path,
            "fingerprint": fingerprint(model, sites),
        },
        "config_extra": config.local_dict(),
        "trainable_parameters": int(sum(t.numel() for t in tensors.values())),
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


def render_readme(card: dict[str, Any]) -> str:
    base = card.get("base_model", {}).get("name_or_path") or card["base_model"]["fingerprint"]["architecture"]
    lines = [
        f"# {card.get('name')}",
        "",
        f"A **{card['method']}** adapter for `{base}`, in adapterhub's folder format "
        "(PEFT-compatible `adapter_config.json` and `adapter_model.safetensors`).",
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
    lines += ["", "## Use", "", "```python", "import adapterhub as ah", "am = ah.AdapterModel(base_model)",
              f"am.load_adapter('path/to/this/folder', name={card.get('name')!r}, set_active=True)", "```", ""]
    return "\n".join(lines)


def site_paths(model: AdapterModel, name: str) -> list[str]:
    return [p for p, s in iter_sites(model) if name in s.ah_adapters]
