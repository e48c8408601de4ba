"""`AdapterModel`: adapters on a frozen transformers model that stays a transformers model.

``AdapterModel(model)`` does not wrap: it swaps the model's class for a subclass that mixes in the
adapter API, in place, and returns the same object. ``generate()``, ``save_pretrained()``,
``transformers.Trainer`` and every attribute keep working because nothing else changed.

>>> from transformers import LlamaConfig, LlamaForCausalLM
>>> import adapterhub as ah
>>> cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
...                   num_attention_heads=4, num_key_value_heads=2, vocab_size=128)
>>> am = ah.AdapterModel(LlamaForCausalLM(cfg))
>>> am.add_adapter("sent", ah.LoRAConfig(r=4, alpha=8))
>>> am.set_active("sent"); am.active_adapters
('sent',)
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from adapterhub.compose.batching import per_row, per_row_prompts
from adapterhub.compose.composition import block_layers, execute, routing
from adapterhub.compose.composition import blocks as composition
from adapterhub.compose.core.api import CompositionMixin
from adapterhub.compose.core.hub import pull_from_registry
from adapterhub.compose.core.model_facts import fill_model_facts
from adapterhub.compose.core.state import ModelAdapters
from adapterhub.compose.core.targets import build_sites, find_heads
from adapterhub.compose.folder import load, save
from adapterhub.compose.tuners import tuner_for_config
from adapterhub.compose.tuners import virtual_tokens as prompting
from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.compose.tuners.heads import add_head, iter_heads
from adapterhub.compose.tuners.site import iter_sites, make_site
from adapterhub.errors import AdapterNotFoundError, InvalidAdapterError


@dataclass(frozen=True)
class TrainableParameters:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(1, self.total)

    def __str__(self) -> str:
        return f"trainable params: {self.trainable:,} || all params: {self.total:,} || trainable%: {self.percent:.4f}"


_CLASSES: dict[type, type] = {}


class AdapterModel(CompositionMixin):
    """Mixin that turns a ``PreTrainedModel`` into an adapter-capable one, in place (see module doc)."""

    ah: ModelAdapters
    ah_prompts: nn.ModuleDict

    def __new__(cls, model: nn.Module | None = None, *args, **kwargs):
        if cls is not AdapterModel:  # a dynamic subclass being built by transformers/copy: normal path
            return super().__new__(cls)
        if isinstance(model, AdapterModel):
            return model
        if not isinstance(model, nn.Module) or not hasattr(model, "config"):
            raise TypeError(f"AdapterModel expects a transformers PreTrainedModel, got {type(model).__name__}")
        base_cls = type(model)
        new_cls = _CLASSES.get(base_cls)
        if new_cls is None:
            def forward(self, *args, **kwargs):
                return AdapterModel.forward(self, *args, **kwargs)

            forward.__signature__ = _forward_signature(base_cls.forward)
            forward.__doc__ = base_cls.forward.__doc__
            attrs = {"__module__": base_cls.__module__, "forward": forward}
            new_cls = type(base_cls.__name__, (AdapterModel, base_cls), attrs)
            _CLASSES[base_cls] = new_cls
        model.__class__ = new_cls
        return model

    def __init__(self, model: nn.Module | None = None, *args, **kwargs):
        if "ah" in self.__dict__:
            return
        self.ah = ModelAdapters()
        self.ah_prompts = nn.ModuleDict()
        for p in self.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ adding and removing
    @property
    def adapters(self) -> dict[str, AdapterConfig]:
        return dict(self.ah.configs)

    def add_adapter(self, name: str, config: AdapterConfig, *, tokenizer=None, set_active: bool = False) -> None:
        """Attach a new adapter. Everything is built before anything is attached, so an error
        (a target that matches nothing, a bad config) leaves the model exactly as it was."""
        if not isinstance(name, str) or not name or "." in name:
            raise InvalidAdapterError(f"adapter name {name!r} must be a non-empty string without '.'")
        if name in self.ah.configs:
            raise InvalidAdapterError(f"an adapter named {name!r} already exists; delete it or pick another name")
        if not isinstance(config, AdapterConfig):
            raise InvalidAdapterError(f"expected an adapter config (LoRAConfig, ...), got {type(config).__name__}")
        config = copy.deepcopy(config)
        method = tuner_for_config(config)
        fill_model_facts(self, config, method)
        if method.info.at_sites:
            built, prepare = build_sites(self, method, config, name)
        else:
            built, encoder = [], method.tuner.build_encoder(self, config, tokenizer)
        heads = find_heads(self, config.modules_to_save, name)
        # attach: nothing below can fail on user input
        device = next(self.parameters()).device
        added: list[nn.Module] = []
        for module, site_name, layer in built:
            site = make_site(module, self.ah.state, site_name)
            prepare(site_name, site)
            site.ah_adapters[name] = layer if _on(layer, device) else layer.to(device=device)
            added.append(site.ah_adapters[name])
        if method.info.virtual_tokens:
            self.ah_prompts[name] = encoder.to(device=device)
            added.append(self.ah_prompts[name])
        for head_name in heads:
            added.append(add_head(self.get_submodule(head_name), self.ah.state, name))
        self.ah.configs[name] = config
        for part in added:  # frozen until train_adapter; no walk over the whole model for it
            part.requires_grad_(False)
        if set_active:
            self.set_active(name)

    def delete_adapter(self, name: str) -> None:
        self._require(name)
        for _, site in iter_sites(self):
            if name in site.ah_adapters:
                if name in site.ah_merged:
                    raise InvalidAdapterError(f"adapter {name!r} is merged; call unmerge() before deleting it")
                del site.ah_adapters[name]
        for _, head in iter_heads(self):
            if name in head.ah_heads:
                del head.ah_heads[name]
        if name in self.ah_prompts:
            del self.ah_prompts[name]
        del self.ah.configs[name]
        self.ah.sources.pop(name, None)
        self.ah.card_facts.pop(name, None)
        block_layers.drop_layers_using(self, name)
        for key in [k for k, c in self.ah.compositions.items() if name in composition.leaves_of(c)]:
            del self.ah.compositions[key]
        if name in composition.leaves_of(self.ah.active):
            self.set_active(None)

    def _require(self, name: str) -> AdapterConfig:
        if name not in self.ah.configs:
            known = ", ".join(sorted(self.ah.configs)) or "none"
            raise AdapterNotFoundError(f"no adapter named {name!r} on this model (loaded: {known})")
        return self.ah.configs[name]

    # ------------------------------------------------------------------ activation and training
    def set_active(self, active: str | composition.Block | list[str] | None) -> None:
        """Activate one adapter, a list (stacked), a composition block or registered composition name,
        or ``None`` for the base. Compositions with Fuse/Average/Route run through ``execute``."""
        named = active if isinstance(active, str) and active in self.ah.compositions else None
        active = composition.normalize(self.ah.compositions[named] if named else active)
        self._check_composition(active)
        self.ah.active = active
        self.ah.active_name = named
        state = self.ah.state
        state.active = composition.leaves_of(active)
        state.block_plan = execute.BlockPlan(active) if composition.needs_executor(active) else None

    # PEFT spelling
    set_adapter = set_active

    @property
    def active_adapters(self) -> tuple[str, ...]:
        return self.ah.state.active

    @property
    def active_composition(self):
        return self.ah.active

    @contextlib.contextmanager
    def disable_adapters(self):
        """Run the bare base model inside the block (merged adapters excepted, as in PEFT)."""
        previous = self.ah.state.disabled
        self.ah.state.disabled = True
        try:
            yield self
        finally:
            self.ah.state.disabled = previous

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        self._require(name)
        params: list[nn.Parameter] = []
        for _, site in iter_sites(self):
            if name in site.ah_adapters:
                params.extend(site.ah_adapters[name].parameters())
        for _, head in iter_heads(self):
            if name in head.ah_heads:
                params.extend(head.ah_heads[name].parameters())
        if name in self.ah_prompts:
            params.extend(self.ah_prompts[name].parameters())
        return params

    def train_adapter(self, name: str) -> None:
        """Freeze everything but this adapter (for LoRA-FA, but its B matrices), activate it, train mode."""
        config = self._require(name)
        for p in self.parameters():
            p.requires_grad_(False)
        method = tuner_for_config(config)
        for _, site in iter_sites(self):
            if name in site.ah_adapters:
                for p in method.tuner.trainable_parameters(site.ah_adapters[name], config):
                    p.requires_grad_(True)
        for _, head in iter_heads(self):
            if name in head.ah_heads:
                head.ah_heads[name].requires_grad_(True)
        if name in self.ah_prompts:
            self.ah_prompts[name].requires_grad_(True)
        self.set_active(name)
        self.train()

    def trainable_parameters(self) -> TrainableParameters:
        """Count like PEFT's ``print_trainable_parameters`` (adapter copies counted once, base included)."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return TrainableParameters(trainable, total)

    def print_trainable_parameters(self) -> None:
        print(self.trainable_parameters())

    # ------------------------------------------------------------------ merging
    @torch.no_grad()
    def merge(self, name: str | None = None) -> None:
        """Fold a LoRA or IA³ adapter (default: the active ones) into the base weights."""
        if name is None and self.ah.state.block_plan is not None:
            raise InvalidAdapterError(
                f"cannot merge the active composition {self.ah.active!r}; merge_adapters() builds one LoRA from several"
            )
        names = [name] if name else list(self.active_adapters)
        for n in names:
            config = self._require(n)
            if not tuner_for_config(config).info.mergeable:
                raise InvalidAdapterError(f"adapter {n!r} ({config.method}) cannot be merged; only LoRA and IA³ can")
        for n in names:
            for _, site in iter_sites(self):
                if n in site.ah_adapters and n not in site.ah_merged:
                    site.ah_merged[n] = site.weight.detach().clone()
                    if site.bias is not None:
                        site.ah_merged_bias[n] = site.bias.detach().clone()
                    site.ah_adapters[n].merge_into(site)

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weights saved when merging (bit for bit, merge order undone)."""
        for _, site in iter_sites(self):
            for n in reversed(list(site.ah_merged)):
                site.weight.data.copy_(site.ah_merged.pop(n))
                if n in site.ah_merged_bias:
                    site.bias.data.copy_(site.ah_merged_bias.pop(n))

    @property
    def merged_adapters(self) -> tuple[str, ...]:
        names: list[str] = []
        for _, site in iter_sites(self):
            names.extend(n for n in site.ah_merged if n not in names)
        return tuple(names)

    # ------------------------------------------------------------------ folders
    def save_adapter(self, name: str, path: str | Path, format: str = "adapterhub", card: dict | None = None,
                     base_model_id: str | None = None) -> Path:
        """Write the adapter folder (PEFT's config + safetensors, + ``adapterhub.json``), the base by its Hub id."""
        return save.save_adapter(self, name, Path(path), format=format, card=card, base_model_id=base_model_id)

    def load_adapter(self, source: str | Path, name: str | None = None, *, replace: bool = False,
                     set_active: bool = False, pull: Callable[[str], Path] | None = None) -> str:
        """Load a folder (ours or PEFT's) or a registry reference (``ns/name:stable``); return its name.
        ``pull`` turns a reference into a folder (default: the ``ADAPTERHUB_URL`` registry's client)."""
        return load.load_adapter(self, source, name=name, replace=replace, set_active=set_active,
                                 pull=pull or pull_from_registry)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save the base model alone (merged adapters included), as transformers would."""
        if "state_dict" not in kwargs:
            kwargs["state_dict"] = self.base_state_dict()
        return super().save_pretrained(save_directory, *args, **kwargs)

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        marks = (".ah_adapters.", ".ah_heads.", "ah_prompts.", ".ah_fusions.", ".ah_routers.")
        return {k: v for k, v in self.state_dict().items() if not any(m in k or k.startswith(m) for m in marks)}

    # ------------------------------------------------------------------ running
    def _active_prompt_encoders(self) -> list[nn.Module]:
        state = self.ah.state
        if state.disabled:
            return []
        return [self.ah_prompts[n] for n in state.active if n in self.ah_prompts]

    def forward(self, *args, **kwargs):
        """The model's forward; ``adapter_names=[...]`` gives each row its own adapter (``per_row``)."""
        names = kwargs.pop("adapter_names", None)
        with routing.collect_aux(self.ah.state) as aux:
            if names is None:
                out = self.forward_with_virtual_tokens(args, kwargs)
            else:
                with per_row.row_plan(self, names, _batch_size(args, kwargs)) as plan:
                    if plan.virtual_groups:
                        out = per_row_prompts.forward(self, plan, _bind_positional(super().forward, args, kwargs))
                    else:
                        out = self.forward_with_virtual_tokens(args, kwargs)
        return routing.attach_aux(out, aux)

    def forward_with_virtual_tokens(self, args: tuple, kwargs: dict, encoders: list[nn.Module] | None = None):
        """The base forward, with ``encoders`` (default: the active prompt/prefix adapters) prepended."""
        state = self.ah.state
        if encoders is None:
            encoders = [] if state.in_generate or state.row_plan is not None else self._active_prompt_encoders()
        if not encoders:
            return super().forward(*args, **kwargs)
        kwargs = _bind_positional(super().forward, args, kwargs)
        return prompting.prompt_forward(self, encoders, super().forward, kwargs)

    def generate(self, *args, **kwargs):
        names = kwargs.pop("adapter_names", None)
        if names is None:
            encoders = self._active_prompt_encoders()
            if not encoders:
                return super().generate(*args, **kwargs)
            return self.generate_with_virtual_tokens(_with_input_ids(args, kwargs), encoders)
        with per_row.row_plan(self, names, _batch_size(args, kwargs)) as plan:
            if plan.virtual_groups:
                return per_row_prompts.generate(self, plan, _with_input_ids(args, kwargs))
            return super().generate(*args, **kwargs)

    def generate_with_virtual_tokens(self, kwargs: dict, encoders: list[nn.Module]):
        """transformers' generate, with ``encoders``' virtual tokens put in the cache first."""
        if not encoders:
            return super().generate(**kwargs)
        if kwargs.get("input_ids") is None:
            raise InvalidAdapterError("generate() with a prompt or prefix adapter needs input_ids")
        state = self.ah.state
        state.in_generate = True
        try:
            return prompting.prompt_generate(self, encoders, super().forward, super().generate, kwargs)
        finally:
            state.in_generate = False


def _on(module: nn.Module, device: torch.device) -> bool:
    """Whether a freshly built layer already lives on ``device`` (its parameters are made together,
    so the first one tells), in which case ``.to`` and its walk are skipped."""
    first = next(module.parameters(), None)
    return first is None or first.device == device


def _batch_size(args: tuple, kwargs: dict) -> int | None:
    ref = args[0] if args else kwargs.get("input_ids")
    if ref is None:
        ref = kwargs.get("inputs_embeds")
    return ref.shape[0] if isinstance(ref, torch.Tensor) else None


def _with_input_ids(args: tuple, kwargs: dict) -> dict:
    if args:
        kwargs["input_ids"] = args[0]
    return kwargs


def _bind_positional(fn, args: tuple, kwargs: dict) -> dict:
    if not args:
        return kwargs
    names = [p for p in inspect.signature(fn).parameters if p not in ("self", "args", "kwargs")]
    for pname, value in zip(names, args, strict=False):
        kwargs[pname] = value
    return kwargs


def _forward_signature(fn) -> inspect.Signature:
    """The base model's forward signature plus ``adapter_names``: Trainer inspects it to keep columns."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    extra = inspect.Parameter("adapter_names", inspect.Parameter.KEYWORD_ONLY, default=None)
    idx = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    params.insert(idx, extra)
    return sig.replace(parameters=params)


__all__ = ["AdapterModel", "TrainableParameters"]
