"""Weight-space merges of LoRA adapters into one new LoRA adapter (PEFT's ``add_weighted_adapter``).

Methods, per site, with ``s_i`` each adapter's own scaling (``alpha/r`` or rsLoRA's ``alpha/sqrt(r)``):

- ``cat``: ``A = [w_i s_i A_i]``, ``B = [B_i]`` stacked along the rank: exactly the weighted sum of
  the adapters' outputs; rank = sum of ranks.
- ``svd``: the best rank-``svd_rank`` approximation of ``sum_i w_i s_i B_i A_i``.
- ``linear``, ``magnitude_prune``, ``ties``, ``dare_linear``, ``dare_ties``: PEFT's task arithmetic
  applied to ``A`` and ``B`` separately with weights ``sqrt(|w_i s_i|)`` (the sign on ``A``);
  pruning (``density``) happens per adapter before anything is combined.

Unlike PEFT, adapters of different ranks are zero-padded to the largest rank instead of refused,
and the new adapter's scaling is 1 (``alpha = r``, no rsLoRA), so the merged update is what was
computed whatever the sources' scaling rule (PEFT copies ``use_rslora`` from the first source and
rescales the result, peft#3761). As in PEFT, merging a single adapter is always the linear merge,
which reproduces it exactly. The random draws of the DARE methods follow PEFT's order, so with the
same seed both libraries drop the same entries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from adapterhub.compose.folder import keys, load
from adapterhub.compose.tuners.lora.config import LoRAConfig
from adapterhub.compose.tuners.site import iter_sites
from adapterhub.errors import InvalidAdapterError

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

PRUNED = ("ties", "dare_linear", "dare_ties", "magnitude_prune")
MERGE_METHODS = ("linear", "cat", "svd", *PRUNED)


# ---------------------------------------------------------------------- task arithmetic (PEFT's definitions)
def magnitude_prune_tensor(t: torch.Tensor, density: float) -> torch.Tensor:
    if density >= 1:
        return t
    mask = torch.zeros_like(t).reshape(-1)
    mask[torch.topk(t.abs().reshape(-1), k=int(density * t.numel()), largest=True)[1]] = 1
    return t * mask.reshape(t.shape)


def random_prune_tensor(t: torch.Tensor, density: float) -> torch.Tensor:
    if density >= 1:
        return t
    return t * torch.bernoulli(torch.full_like(t, density)) / density


def _weighted(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return stacked * weights.view(weights.shape + (1,) * (stacked.dim() - 1))


def _sum(stacked: torch.Tensor, weights: torch.Tensor, sign: str) -> torch.Tensor:
    return _weighted(stacked, weights).sum(0)


def _disjoint(stacked: torch.Tensor, weights: torch.Tensor, sign: str) -> torch.Tensor:
    """TIES: elect a sign per entry, then average the weighted entries that agree with it."""
    signs = stacked.sign()
    magnitude = stacked.sum(0) if sign == "total" else signs.sum(0)
    mask = signs == torch.where(magnitude >= 0, 1, -1)
    return (_weighted(stacked, weights) * mask).sum(0) / torch.clamp(mask.sum(0), min=1.0)


# method -> (prune each tensor, combine the stacked tensors)
ARITHMETIC: dict[str, tuple[Callable | None, Callable]] = {
    "linear": (None, _sum),
    "magnitude_prune": (magnitude_prune_tensor, _sum),
    "ties": (magnitude_prune_tensor, _disjoint),
    "dare_linear": (random_prune_tensor, _sum),
    "dare_ties": (random_prune_tensor, _disjoint),
}


# ---------------------------------------------------------------------- per site
def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, 0, 0, rows - t.shape[0]))


def _pad_cols(t: torch.Tensor, cols: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, cols - t.shape[1]))


def _site_svd(layers, weights, rank):
    delta = sum(w * layer.scaling * (layer.lora_B.weight @ layer.lora_A.weight)
                for layer, w in zip(layers, weights, strict=True))
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    k = min(rank, S.shape[0])
    return _pad_rows(Vh[:k], rank), _pad_cols(U[:, :k] * S[:k], rank)


def _site_arithmetic(layers, weights, rank, method, density, sign):
    prune, combine = ARITHMETIC[method]
    scaled = [w * layer.scaling for layer, w in zip(layers, weights, strict=True)]
    w_a = torch.tensor([math.sqrt(abs(v)) * (1 if v >= 0 else -1) for v in scaled])
    w_b = torch.tensor([math.sqrt(abs(v)) for v in scaled])
    out = []
    for part, pad, w in (("lora_A", _pad_rows, w_a), ("lora_B", _pad_cols, w_b)):
        tensors = [getattr(layer, part).weight for layer in layers]
        if prune is not None:
            tensors = [prune(t, density) for t in tensors]  # before padding: density counts real entries
        stacked = torch.stack([pad(t, rank) for t in tensors])
        out.append(combine(stacked, w.to(stacked), sign).to(tensors[0].dtype))
    return out[0], out[1]


# ---------------------------------------------------------------------- the merge
def _check(model: AdapterModel, names, weights, method, density, svd_rank, new_name):
    if not names:
        raise InvalidAdapterError("merge_adapters needs at least one adapter name")
    for name in names:
        config = model._require(name)
        if config.method != "lora":
            raise InvalidAdapterError(f"merge_adapters merges LoRA adapters; {name!r} is a {config.method} adapter")
        if config.modules_to_save:
            raise InvalidAdapterError(f"merge_adapters cannot merge {name!r}: it carries modules_to_save copies")
        if name in model.merged_adapters:
            raise InvalidAdapterError(f"adapter {name!r} is merged into the base; unmerge() before merging it")
    if len(weights) != len(names):
        raise InvalidAdapterError(f"merge_adapters got {len(names)} adapters but {len(weights)} weights")
    if method not in MERGE_METHODS:
        raise InvalidAdapterError(f"unknown merge method {method!r}; use one of {', '.join(MERGE_METHODS)}")
    if method in PRUNED and len(names) > 1 and (density is None or not 0 <= density <= 1):
        raise InvalidAdapterError(f"merge method {method!r} needs density in [0, 1], got {density!r}")
    if svd_rank is not None and (not isinstance(svd_rank, int) or svd_rank <= 0):
        raise InvalidAdapterError(f"svd_rank must be a positive integer, got {svd_rank!r}")
    if new_name in model.ah.configs:
        raise InvalidAdapterError(f"an adapter named {new_name!r} already exists; pick another new_name")


def merge_adapters(model: AdapterModel, names: list[str], weights: list[float] | None, method: str, *,
                   density: float | None, svd_rank: int | None, new_name: str,
                   majority_sign_method: str = "total") -> LoRAConfig:
    weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
    _check(model, names, weights, method, density, svd_rank, new_name)
    if len(names) == 1:
        method = "linear"
    ranks = [model.ah.configs[n].r for n in names]
    rank = {"cat": sum(ranks), "svd": svd_rank or max(ranks)}.get(method, max(ranks))
    merged: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    with torch.no_grad():  # every tensor computed before the new adapter exists (DARE's draws follow PEFT's)
        for path, site in iter_sites(model):
            present = [(site.ah_adapters[n], w) for n, w in zip(names, weights, strict=True) if n in site.ah_adapters]
            if not present:
                continue
            layers, ws = [p[0] for p in present], [p[1] for p in present]
            if method == "cat":
                all_layers = {n: site.ah_adapters[n] if n in site.ah_adapters else None for n in names}
                A, B = _site_cat_full(all_layers, names, weights, ranks)
            elif method == "svd":
                A, B = _site_svd(layers, ws, rank)
            else:
                A, B = _site_arithmetic(layers, ws, rank, method, density, majority_sign_method)
            merged[path] = (A, B)
    first = model.ah.configs[names[0]]
    config = LoRAConfig(
        r=rank, alpha=rank, dropout=first.dropout, use_rslora=False, init_lora_weights=False,
        target_modules="|".join(re.escape(p) for p in merged), task_type=first.task_type,
        base_model_name_or_path=first.base_model_name_or_path,
    )
    model.add_adapter(new_name, config)
    try:
        prefix = keys.PREFIX
        tensors = {}
        for path, (A, B) in merged.items():
            tensors[f"{prefix}{path}.lora_A.weight"] = A
            tensors[f"{prefix}{path}.lora_B.weight"] = B
        load.assign(model, new_name, tensors)
    except BaseException:
        model.delete_adapter(new_name)
        raise
    return model.ah.configs[new_name]


def _site_cat_full(layers: dict, names: list[str], weights: list[float], ranks: list[int]):
    """``cat`` keeps each adapter's rank slot at every site (zeros where it is absent)."""
    As, Bs = [], []
    ref = next(v for v in layers.values() if v is not None)
    in_f, out_f = ref.lora_A.weight.shape[1], ref.lora_B.weight.shape[0]
    for name, w, r in zip(names, weights, ranks, strict=True):
        layer = layers[name]
        if layer is None:
            As.append(ref.lora_A.weight.new_zeros(r, in_f))
            Bs.append(ref.lora_B.weight.new_zeros(out_f, r))
        else:
            As.append(w * layer.scaling * layer.lora_A.weight)
            Bs.append(layer.lora_B.weight)
    return torch.cat(As), torch.cat(Bs, dim=1)
