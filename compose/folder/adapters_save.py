"""Writing one of our adapters as AdapterHub's ``adapters`` writes it (``save_adapter(...,
use_safetensors=True)``): the folder ``adapters`` 1.3 loads with its stock config. The mapping and
what cannot map are in ``adapters_format``; this is its inverse."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from adapterhub import adapters_folder as af
from adapterhub.compose.core.arch import arch_spec
from adapterhub.compose.folder.adapters_format import (
    BN_OTHERS,
    BN_SHARED,
    LAYER,
    LORA_OTHERS,
    LORA_SITES,
    WHY_NOT,
    family,
)
from adapterhub.compose.folder.keys import PREFIX, adapter_state_dict
from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.compose.tuners.ia3.config import IA3Config
from adapterhub.compose.tuners.lora.config import LoRAConfig
from adapterhub.compose.tuners.site import iter_sites
from adapterhub.errors import InvalidAdapterError
from adapterhub.format import atomic_folder, write_json

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel


def save_adapters_folder(model: AdapterModel, name: str, path: Path, base_id: str | None) -> Path:
    config = model._require(name)
    tensors = adapter_state_dict(model, name)
    sites = {p for p, _ in iter_sites(model)}
    body = {k: v for k, v in tensors.items() if _site_of(k, sites) is not None}
    heads = {k[len(PREFIX):]: v for k, v in tensors.items() if k not in body}
    if isinstance(config, BottleneckConfig):
        options, weights = _bottleneck(model, name, config, body)
    elif isinstance(config, LoRAConfig | IA3Config):
        options, weights = _lora(model, name, config, body)
    else:
        raise InvalidAdapterError(f"adapter {name!r} is a {config.method} adapter: adapters' prompt and prefix "
                                  f"tuning are other networks than ours (PEFT's) {WHY_NOT[config.method]}, so it "
                                  "cannot be written for adapters")
    common = {"hidden_size": model.config.hidden_size, "model_class": type(model).__name__,
              "model_name": base_id or "", "model_type": model.config.model_type, "version": af.WRITTEN_VERSION}
    with atomic_folder(Path(path)) as tmp:
        write_json(tmp / "adapter_config.json", {"config": options, "name": name, **common})
        save_file(weights, str(tmp / af.WEIGHTS_FILE), metadata={"format": "pt"})
        if heads:
            labels = (model.ah.card_facts.get(name) or {}).get("labels") or [
                model.config.id2label[i] for i in sorted(model.config.id2label)]
            write_json(tmp / af.HEAD_CONFIG_FILE, {"config": None, "label2id": {x: i for i, x in enumerate(labels)},
                                                   "num_labels": len(labels), "name": None, **common})
            save_file(heads, str(tmp / af.HEAD_WEIGHTS_FILE), metadata={"format": "pt"})
    return Path(path)


def _site_of(key: str, sites: set[str]) -> str | None:
    """The site a tensor key belongs to (``<site>.<module>.<param>`` or ``<site>.<param>``), None for a head's."""
    rest = key[len(PREFIX):]
    return next((s for s in (rest.rsplit(".", 2)[0], rest.rsplit(".", 1)[0]) if s in sites), None)


def _layers(model: AdapterModel, sites: set[str], name: str) -> list[int]:
    """``leave_out``: the layers the adapter skips (it must sit at the same places in every other)."""
    n = getattr(model.config, "num_hidden_layers", None) or model.config.n_layer
    present = {int(m["i"]) for s in sites if (m := LAYER.fullmatch(s))}
    return [i for i in range(n) if i not in present]


def _bottleneck(model: AdapterModel, name: str, config: BottleneckConfig, body: dict[str, torch.Tensor]):
    sublayers = arch_spec(model.config.model_type).sublayers
    weights: dict[str, torch.Tensor] = {}
    kinds: set[int] = set()
    sites: set[str] = set()
    for key, value in body.items():
        site, param = key[len(PREFIX):].rsplit(".", 2)[0], ".".join(key.rsplit(".", 2)[1:])
        found = [(i, m) for i, sub in enumerate(sublayers) if (m := re.fullmatch(sub.site_pattern, site))]
        if not found:
            raise InvalidAdapterError(f"adapter {name!r} sits at {site!r}, where adapters puts no bottleneck adapter")
        i, match = found[0]
        kinds.add(i)
        sites.add(site)
        at = sublayers[i].adapters_at.format(b=match["b"])
        for theirs in _their_bn_params(param, config.ln_before):
            weights[f"{at}.{name}.{theirs}"] = value.clone()
    if kinds != {i for i, on in enumerate((config.mh_adapter, config.output_adapter)) if on}:
        raise InvalidAdapterError(f"adapter {name!r}: its sites do not match mh_adapter={config.mh_adapter}, "
                                  f"output_adapter={config.output_adapter}, which adapters places by")
    options = {**BN_OTHERS, **{k: getattr(config, k) for k in BN_SHARED}, "leave_out": _layers(model, sites, name)}
    return options, weights


def _their_bn_params(param: str, ln_before: bool) -> list[str]:
    head, tail = param.rsplit(".", 1)
    if ln_before and head == "adapter_norm_before":
        return [f"adapter_down.0.{tail}", f"adapter_norm_before.{tail}"]
    if head == "adapter_down":
        return [f"adapter_down.{1 if ln_before else 0}.{tail}"]
    return [param]


def _lora(model: AdapterModel, name: str, config, body: dict[str, torch.Tensor]):
    ia3 = isinstance(config, IA3Config)
    where = LORA_SITES.get(family(model))
    if where is None:
        raise InvalidAdapterError(f"adapter {name!r}: adapters' LoRA and IA3 on {model.config.model_type} are not "
                                  "written (GPT-2's fused c_attn: adapters' parts of it are read here, ours cannot be split back)")
    by_suffix = {v: k for k, v in where.items()}
    weights: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    sites: set[str] = set()
    for key, value in body.items():
        rest = key[len(PREFIX):]
        module, param = (rest.rsplit(".", 1) if ia3 else rest.rsplit(".", 2)[:2])
        match = LAYER.fullmatch(module)
        location = by_suffix.get(match["rest"]) if match else None
        if location is None:
            raise InvalidAdapterError(f"adapter {name!r} sits at {module!r}, where adapters puts no "
                                      f"{'IA3' if ia3 else 'LoRA'} (it targets {', '.join(where.values())})")
        if ia3 and value.shape[0] == 1 and value.numel() > 1:
            raise InvalidAdapterError(f"adapter {name!r}: IA3 on {module!r} scales its input; adapters scales outputs only")
        used.add(location)
        sites.add(module)
        weights[f"{module}.loras.{name}.{'lora_B' if ia3 else param}"] = value.reshape(-1, 1) if ia3 else value
    attn = [m for m in ("q", "k", "v") if m in used]
    options = {**LORA_OTHERS, "architecture": "lora", "attn_matrices": attn, "selfattn_lora": bool(attn),
               "intermediate_lora": "intermediate" in used, "output_lora": "output" in used,
               "leave_out": _layers(model, sites, name), "dropout": 0.0 if ia3 else config.dropout,
               "composition_mode": "scale" if ia3 else "add", "r": 1 if ia3 else config.r,
               "alpha": 1 if ia3 else config.alpha, "init_weights": "ia3" if ia3 else "lora"}
    if not ia3 and config.use_rslora:
        raise InvalidAdapterError(f"adapter {name!r} uses rsLoRA's alpha/sqrt(r) scaling, which adapters lacks")
    return options, weights
