"""Adapter sites: existing ``nn.Linear``/``Conv1D`` modules taught to run adapters, in place.

Instead of wrapping a target in a new module (which renames every base weight, as PEFT's
``base_layer`` does), the module's class is swapped for a subclass that adds an ``ah_adapters``
``ModuleDict``. Base weight names stay exactly as transformers wrote them, so the model keeps
loading, saving and training as the same transformers model, and merging edits the weight in place.

Each method contributes a small per-site module (``SiteAdapter``) with two hooks: ``scale_input``
(IA³ on feed-forward inputs) and ``on_output`` (LoRA adds its delta, IA³ scales, a bottleneck
adapter transforms). The site applies them in the active composition's order.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterhub.errors import InvalidAdapterError


class SiteAdapter(nn.Module):
    """One adapter's parameters at one site."""

    scales_input = False  # True where ``scale_input`` changes the input (IA³ on FFN inputs)

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def on_output(self, site: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out

    def delta_weight(self, site: nn.Module) -> torch.Tensor:  # pragma: no cover - mergeable methods override
        raise NotImplementedError


class AdapterState:
    """What is active, shared by reference between the model and all of its sites (not a Module)."""

    def __init__(self) -> None:
        self.active: tuple[str, ...] = ()
        self.disabled = False
        self.in_generate = False
        self.row_plan = None  # per-row adapter plan for the current forward, if any
        self.block_plan = None  # runs the active composition when it holds Fuse/Average/Route
        self.aux_losses: list | None = None  # routers append load-balancing losses here while collecting


class AdapterSiteMixin:
    """Mixed into the class of a target module; see the module docstring."""

    ah_adapters: nn.ModuleDict
    ah_state: AdapterState
    ah_merged: dict[str, torch.Tensor]

    def _ah_init(self, state: AdapterState) -> None:
        nn.Module.__setattr__(self, "ah_state", state)
        self.ah_adapters = nn.ModuleDict()
        self.ah_merged = {}  # adapter name -> weight before merging it (exact unmerge)
        self.ah_merged_bias = {}

    def _ah_active(self) -> list[SiteAdapter]:
        state = self.ah_state
        if state.disabled:
            return []
        adapters = self.ah_adapters
        merged = self.ah_merged
        return [adapters[n] for n in state.active if n in adapters and n not in merged]

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        state = self.ah_state
        plan = state.row_plan if state.row_plan is not None else state.block_plan
        if plan is not None and not state.disabled:
            return plan.apply(self, x, *args, **kwargs)
        active = self._ah_active()
        if not active:
            return super().forward(x, *args, **kwargs)
        return self._ah_apply(active, x, *args, **kwargs)

    def _ah_apply(self, active: list[SiteAdapter], x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        h = x
        for adapter in active:
            h = adapter.scale_input(h)
        out = super().forward(h, *args, **kwargs)
        for adapter in active:
            out = adapter.on_output(self, x, out)
        return out

    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


@dataclass(frozen=True)
class SiteFacts:
    """What a method's ``build_layer`` reads from a site, known before the site is swapped in."""

    in_out_features: tuple[int, int]
    fan_in_fan_out: bool


def site_facts(module: nn.Module, name: str) -> SiteFacts:
    """Check ``module`` can carry adapters and describe it; raise naming the module otherwise."""
    if isinstance(module, Conv1D):
        return SiteFacts((module.weight.shape[0], module.weight.shape[1]), True)
    if isinstance(module, nn.Linear):
        return SiteFacts((module.in_features, module.out_features), False)
    raise InvalidAdapterError(
        f"module {name!r} is a {type(module).__name__}; adapters attach to Linear or Conv1D layers only"
    )


_SITE_CLASSES: dict[type, type] = {}


def make_site(module: nn.Module, state: AdapterState, name: str) -> AdapterSiteMixin:
    """Turn ``module`` into an adapter site in place (idempotent); only Linear and Conv1D qualify."""
    if isinstance(module, AdapterSiteMixin):
        return module
    site_facts(module, name)
    base_cls = type(module)
    cls = _SITE_CLASSES.get(base_cls)
    if cls is None:
        cls = type(base_cls.__name__, (AdapterSiteMixin, base_cls), {"__module__": base_cls.__module__})
        _SITE_CLASSES[base_cls] = cls
    module.__class__ = cls
    module._ah_init(state)
    return module


_BUILDING_FOR_LOAD = contextvars.ContextVar("adapterhub_building_for_load", default=False)


@contextlib.contextmanager
def building_for_load():
    """Site layers built inside skip their random init: a loader assigns every tensor right after.
    ``nn.Linear``'s own init was two thirds of a LoRA hot-load's time, spent on weights thrown away."""
    token = _BUILDING_FOR_LOAD.set(True)
    try:
        yield
    finally:
        _BUILDING_FOR_LOAD.reset(token)


def initialising() -> bool:
    """False while ``building_for_load``: layers leave their weights as allocated."""
    return not _BUILDING_FOR_LOAD.get()


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear(in_features, out_features, bias)``; uninitialised while ``building_for_load``
    (constructed without ``Linear.__init__``'s ``reset_parameters``: same class, names and shapes)."""
    if initialising():
        return nn.Linear(in_features, out_features, bias=bias)
    layer = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(layer)
    # straight into the dicts Module.__setattr__ would fill: its checks were half of this function
    layer.__dict__.update(in_features=in_features, out_features=out_features)
    layer._parameters["weight"] = nn.Parameter(torch.empty(out_features, in_features))
    layer._parameters["bias"] = nn.Parameter(torch.empty(out_features)) if bias else None
    return layer


# submodules that hold adapters (or their copies and layers), never base modules
ADAPTER_CONTAINERS = frozenset({"ah_adapters", "ah_heads", "ah_prompts", "ah_fusions", "ah_routers"})


def base_named_modules(model: nn.Module):
    """``named_modules()`` without descending into adapter containers, so the cost of walking the
    model stays the same with 2 or 200 adapters loaded (loading the 100th is as fast as the 2nd)."""
    seen: set[int] = set()
    todo = [("", model)]
    while todo:
        prefix, module = todo.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        yield prefix, module
        children = [(n, c) for n, c in module._modules.items() if c is not None and n not in ADAPTER_CONTAINERS]
        todo.extend((f"{prefix}.{n}" if prefix else n, c) for n, c in reversed(children))


def iter_sites(model: nn.Module):
    for name, module in base_named_modules(model):
        if isinstance(module, AdapterSiteMixin):
            yield name, module
