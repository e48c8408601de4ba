"""PEFT's key names for an adapter's tensors, shared by saving and loading.

PEFT wraps the model once more for site methods (``base_model.model.``) but not for prompt
learning (``base_model.``); a folder that loads in PEFT must use exactly its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from adapterhub.compose.tuners.heads import iter_heads
from adapterhub.compose.tuners.site import iter_sites

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

PREFIX = "base_model.model."
PROMPT_METHOD_PREFIX = "base_model."  # PEFT does not wrap the model for prompt-learning methods
PROMPT_KEY = "prompt_embeddings"


def key_prefix(model: AdapterModel, name: str) -> str:
    return PROMPT_METHOD_PREFIX if name in model.ah_prompts else PREFIX


def adapter_state_dict(model: AdapterModel, name: str) -> dict[str, torch.Tensor]:
    """The adapter's tensors under PEFT's key names, detached copies on the CPU."""
    out = adapter_tensors(model, name)
    if name in model.ah_prompts:
        out[PROMPT_KEY] = model.ah_prompts[name].export_weight()
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}


def adapter_tensors(model: AdapterModel, name: str) -> dict[str, torch.Tensor]:
    """Live parameters of the adapter's sites and module copies, keyed as PEFT saves them."""
    prefix = key_prefix(model, name)
    out: dict[str, torch.Tensor] = {}
    for path, site in iter_sites(model):
        if name in site.ah_adapters:
            for key, value in site.ah_adapters[name].state_dict(keep_vars=True).items():
                out[f"{prefix}{path}.{key}"] = value
    for path, head in iter_heads(model):
        if name in head.ah_heads:
            for key, value in head.ah_heads[name].state_dict(keep_vars=True).items():
                out[f"{prefix}{path}.{key}"] = value
    return out
