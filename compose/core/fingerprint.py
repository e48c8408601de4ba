"""The base model's fingerprint: enough to refuse an adapter trained for another model, by name.

Recorded in ``adapterhub.json``: architecture, model type, sizes, and the shape of every module
the adapter attaches to. Checked before any weight is touched.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from adapterhub.compose.tuners.site import base_named_modules
from adapterhub.errors import IncompatibleAdapterError

SIZE_KEYS = (("hidden_size", "n_embd", "d_model"), ("num_hidden_layers", "n_layer", "num_layers"))


def _config_value(config, names):
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in names:
        value = getattr(text, name, None)
        if value is not None:
            return value
    return None


def _architecture(model: nn.Module) -> str:
    archs = getattr(model.config, "architectures", None)
    return type(model).__name__ if not archs else archs[0]


def fingerprint(model: nn.Module, site_paths: list[str]) -> dict[str, Any]:
    shapes = {}
    for path in site_paths:
        weight = model.get_submodule(path).weight
        shapes[path] = list(weight.shape)
    return {
        "architecture": type(model).__name__,
        "model_type": getattr(model.config, "model_type", None),
        "hidden_size": _config_value(model.config, SIZE_KEYS[0]),
        "num_hidden_layers": _config_value(model.config, SIZE_KEYS[1]),
        "vocab_size": _config_value(model.config, ("vocab_size",)),
        "shapes": shapes,
    }


def check_fingerprint(model: nn.Module, card: dict[str, Any], adapter: str) -> None:
    """Raise `IncompatibleAdapterError` naming both sides when the card's base model differs."""
    fp = (card.get("base_model") or {}).get("fingerprint")
    if not fp:
        return
    mine = fingerprint(model, [])
    theirs_desc = f"{fp.get('architecture')} hidden {fp.get('hidden_size')}, {fp.get('num_hidden_layers')} layers"
    mine_desc = f"{mine['architecture']} hidden {mine['hidden_size']}, {mine['num_hidden_layers']} layers"
    if fp.get("model_type") and fp.get("model_type") != mine["model_type"]:
        raise IncompatibleAdapterError(
            f"adapter {adapter!r} was trained for {fp.get('model_type')} ({theirs_desc}); this model is "
            f"{mine['model_type']} ({mine_desc})"
        )
    for key in ("hidden_size", "num_hidden_layers"):
        if fp.get(key) is not None and fp.get(key) != mine[key]:
            raise IncompatibleAdapterError(
                f"adapter {adapter!r} was trained for {theirs_desc}; this model has {mine_desc}"
            )
    modules = dict(base_named_modules(model))
    for path, shape in (fp.get("shapes") or {}).items():
        module = modules.get(path)
        if module is None:
            raise IncompatibleAdapterError(f"adapter {adapter!r} attaches to {path!r}, which this model does not have")
        if list(module.weight.shape) != list(shape):
            raise IncompatibleAdapterError(
                f"adapter {adapter!r}: {path} was {tuple(shape)} in the base it was trained on, "
                f"this model has {tuple(module.weight.shape)}"
            )
