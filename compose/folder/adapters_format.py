"""AdapterHub's ``adapters`` folders onto our adapters, and ours back into them.

What maps, exactly (``tests/interop`` checks each with ``adapters`` 1.3 itself): bottleneck adapters
with every ``BnConfig`` option we share (the same network, ``layer.py``), on BERT-family, GPT-2 and
LLaMA; LoRA and IA³ on BERT-family and LLaMA both ways, and read on GPT-2 (``adapters`` adapts parts of
its fused ``c_attn``: `_unfuse_qkv`); ``adapters``' IA³ scales outputs only, and its ``alpha``
multiplies the vector: both fold into PEFT's ``ia3_l``; a model's own classification head
(``head_config.json`` with ``config: null``) and the two-layer tanh flex head. What does not is
refused naming the option or file: gated, PHM (Compacter), invertible and cross-attention adapters,
learned scalings, per-layer reduction factors, DoRA, VeRA, other flex heads, and prompt and prefix
tuning (``WHY_NOT``: neither is PEFT's network, which ours is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file

from adapterhub import adapters_folder as af
from adapterhub.compose.core.arch import arch_spec
from adapterhub.compose.folder.keys import PREFIX
from adapterhub.compose.tuners import TUNERS, Tuner
from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.compose.tuners.ia3.config import IA3Config
from adapterhub.compose.tuners.lora.config import LoRAConfig
from adapterhub.compose.tuners.site import base_named_modules
from adapterhub.errors import IncompatibleAdapterError, InvalidAdapterError
from adapterhub.format import check_safetensors_file, read_json_object
from adapterhub.vocab import CLASSIFICATION

if TYPE_CHECKING:
    from adapterhub.compose.core.model import AdapterModel

# the BnConfig options that are ours too (same names, same meaning)
BN_SHARED = ("mh_adapter", "output_adapter", "reduction_factor", "non_linearity", "original_ln_before",
             "original_ln_after", "residual_before_ln", "adapter_residual_before_ln", "ln_before", "ln_after",
             "is_parallel", "scaling", "init_weights", "dropout")
# the rest of BnConfig as ``adapters`` 1.3 writes it, and which values we can map
BN_OTHERS: dict[str, Any] = {
    "cross_adapter": False, "factorized_phm_W": True, "factorized_phm_rule": False,
    "hypercomplex_nonlinearity": "glorot-uniform", "init_weights_seed": None, "inv_adapter": None,
    "inv_adapter_reduction_factor": None, "learn_phm": True, "leave_out": [], "phm_bias": True,
    "phm_c_init": "normal", "phm_dim": 4, "phm_init_range": 0.0001, "phm_layer": False, "phm_rank": 1,
    "shared_W_phm": False, "shared_phm_rule": True, "stochastic_depth": 0.0, "use_gating": False,
}
REFUSED = {  # option: (the only value we take, what the option is)
    "use_gating": (False, "gated adapters"), "phm_layer": (False, "Compacter's PHM layers"),
    "cross_adapter": (False, "cross-attention adapters"), "inv_adapter": (None, "invertible adapters (MAD-X)"),
    "use_dora": (False, "DoRA"), "vera_d": (None, "VeRA"), "vera_b": (None, "VeRA"),
}
LORA_OTHERS: dict[str, Any] = {"dtype": None, "init_weights_seed": None, "use_dora": False, "use_gating": False,
                               "vera_b": None, "vera_d": None}
LORA_KNOWN = {*LORA_OTHERS, "alpha", "architecture", "attn_matrices", "composition_mode", "dropout", "init_weights",
              "intermediate_lora", "leave_out", "output_lora", "r", "selfattn_lora"}
# where ``adapters`` puts LoRA and IA³ (its location keys), per architecture, below a layer
LORA_SITES = {
    "bert": {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "intermediate": "intermediate.dense", "output": "output.dense"},
    "llama": {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
              "intermediate": "mlp.down_proj", "output": "mlp.up_proj"},  # adapters' names, as it has them
}
WHY_NOT = {  # why adapters' prompt and prefix tuning do not map onto PEFT's (ours)
    "prompt_tuning": "(adapters adds its prompt to the embedding layer's output, after the position embeddings "
                     "and LayerNorm; PEFT's, ours, goes before them: another network)",
    "prefix_tuning": "(adapters builds its prefixes inside each attention layer with its own masking, PEFT's, "
                     "ours, are a key/value cache that shifts the input's positions: not shown to be one network)",
}
LAYER = re.compile(r"(?P<layers>.*\.(?:layer|layers|h))\.(?P<i>\d+)\.(?P<rest>.+)")


@dataclass
class Converted:
    """An ``adapters`` folder as ours: the method, its config, its tensors under our keys, card facts."""

    method: Tuner
    config: Any
    tensors: dict[str, torch.Tensor]
    card: dict[str, Any]


def family(model: AdapterModel) -> str:
    """The arch table's row name for the model (``roberta`` reads as ``bert``)."""
    spec = arch_spec(getattr(model.config, "model_type", ""))
    from adapterhub.compose.core.arch import ARCHITECTURES
    return next(k for k, v in ARCHITECTURES.items() if v is spec)


def read_adapters_folder(folder: Path, raw: dict[str, Any], model: AdapterModel) -> Converted:
    """The ``adapters`` folder at ``folder`` (its parsed ``adapter_config.json`` is ``raw``) as ours."""
    options = raw.get("config")
    if not isinstance(options, dict):
        raise InvalidAdapterError(f"{folder}/adapter_config.json: an adapters config without its 'config' object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidAdapterError(f"{folder}/adapter_config.json: no adapter 'name', which its weight keys hold")
    model_type = getattr(model.config, "model_type", "")
    if raw.get("model_type") not in (None, model_type):
        raise IncompatibleAdapterError(f"{folder}: an adapters adapter for model_type {raw['model_type']!r}, "
                                       f"this model is {model_type!r}")
    for option, (allowed, what) in REFUSED.items():
        if options.get(option, allowed) != allowed:
            raise InvalidAdapterError(f"{folder}: {what} ({option}={options[option]!r}) have no adapterhub equivalent")
    tensors = read_safetensors(folder, af.WEIGHTS_FILE, pickle=af.PICKLE_WEIGHTS_FILE)
    architecture = options.get("architecture") or "bottleneck"
    if architecture == "bottleneck":
        method, config, ours = TUNERS["bottleneck"], bottleneck_config(folder, options), {}
        ours = bottleneck_tensors(folder, tensors, name, config, model)
    elif architecture == "lora" and options.get("composition_mode", "add") in ("add", "scale"):
        method, config, ours = lora_tensors(folder, tensors, name, options, model)
    else:
        raise InvalidAdapterError(
            f"{folder}: adapters' {architecture} adapters are not mapped onto adapterhub's "
            + (WHY_NOT.get(architecture) or "(no equivalent method)"))
    card: dict[str, Any] = {"name": name}
    head = read_head(folder, model)
    if head is not None:
        ours.update(head[0])
        card.update(task=CLASSIFICATION.name, labels=head[1])
    return Converted(method, config, ours, card)


def read_safetensors(folder: Path, file: str, pickle: str | None = None) -> dict[str, torch.Tensor]:
    path = folder / file
    if not path.exists():
        if pickle and (folder / pickle).exists():
            raise InvalidAdapterError(
                f"{folder}: only pickle weights ({pickle}); adapterhub never unpickles. Convert it where you "
                f"trust the file: cd {folder} && {af.CONVERT_COMMAND}")
        raise InvalidAdapterError(f"{folder}: missing {file}")
    return load_checked(path)


def load_checked(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, after the folder format's header check; any failure named."""
    check_safetensors_file(path)
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise InvalidAdapterError(f"{path}: unreadable safetensors file ({exc})") from exc


def bottleneck_config(folder: Path, options: dict[str, Any]) -> BottleneckConfig:
    unknown = sorted(set(options) - set(BN_SHARED) - set(BN_OTHERS) - {"architecture"})
    if unknown:
        raise InvalidAdapterError(f"{folder}/adapter_config.json: unknown bottleneck option {unknown[0]!r}")
    factor = options.get("reduction_factor")
    if isinstance(factor, dict):
        values = set(factor.values())
        if len(values) != 1:
            raise InvalidAdapterError(f"{folder}: per-layer reduction factors {factor} are not supported")
        options = {**options, "reduction_factor": values.pop()}
    if options.get("scaling", 1.0) in ("learned", "channel"):
        raise InvalidAdapterError(f"{folder}: a {options['scaling']} scaling is not supported (only a number)")
    kwargs = {k: options[k] for k in BN_SHARED if k in options}
    if isinstance(kwargs.get("scaling"), int):
        kwargs["scaling"] = float(kwargs["scaling"])
    return BottleneckConfig(**kwargs)


def bottleneck_tensors(folder: Path, tensors: dict[str, torch.Tensor], name: str, config: BottleneckConfig,
                       model: AdapterModel) -> dict[str, torch.Tensor]:
    sublayers = arch_spec(getattr(model.config, "model_type", "")).sublayers
    modules = dict(base_named_modules(model))
    out: dict[str, torch.Tensor] = {}
    marker = f".{name}."
    for key, value in tensors.items():
        at, _, param = key.partition(marker)
        site = None
        for candidate in (at, f"{model.base_model_prefix}.{at}"):
            for sub in sublayers:
                match = re.fullmatch(sub.adapters_pattern, candidate)
                if match and match["b"] + sub.site in modules:
                    site = match["b"] + sub.site
        ours = _our_bn_param(param, config.ln_before)
        if not param or site is None or ours is None:
            raise InvalidAdapterError(f"{folder}/{af.WEIGHTS_FILE}: tensor {key!r} is not a bottleneck adapter "
                                      f"{name!r} of this {type(model).__name__}")
        if ours:
            out[f"{PREFIX}{site}.{ours}"] = value
    return out


def _our_bn_param(param: str, ln_before: bool) -> str | None:
    """Our name for one of ``adapters``' parameters ('' for a duplicate to skip, None if unknown)."""
    head, _, tail = param.rpartition(".")
    if tail not in ("weight", "bias"):
        return None
    if head in ("adapter_up", "adapter_norm_after"):
        return param
    if head == "adapter_norm_before":
        return "" if ln_before else None  # the same tensor as adapter_down.0
    if ln_before:
        return {"adapter_down.0": f"adapter_norm_before.{tail}", "adapter_down.1": f"adapter_down.{tail}"}.get(head)
    return f"adapter_down.{tail}" if head == "adapter_down.0" else None


def lora_tensors(folder: Path, tensors: dict[str, torch.Tensor], name: str, options: dict[str, Any],
                 model: AdapterModel):
    unknown = sorted(set(options) - LORA_KNOWN)
    if unknown:
        raise InvalidAdapterError(f"{folder}/adapter_config.json: unknown LoRA option {unknown[0]!r}")
    ia3 = options.get("composition_mode") == "scale"
    modules = dict(base_named_modules(model))
    out: dict[str, torch.Tensor] = {}
    pattern = re.compile(rf"(?P<module>.+)\.loras\.{re.escape(name)}\.(?P<param>lora_[AB])")
    alpha = float(options.get("alpha", 1 if ia3 else 8))
    for key, value in tensors.items():
        match = pattern.fullmatch(key)
        module = match and next((m for m in (match["module"], f"{model.base_model_prefix}.{match['module']}")
                                 if m in modules), None)
        if not module or (ia3 and match["param"] == "lora_A"):
            raise InvalidAdapterError(f"{folder}/{af.WEIGHTS_FILE}: tensor {key!r} is not a "
                                      f"{'IA3' if ia3 else 'LoRA'} adapter {name!r} of this {type(model).__name__}")
        out[f"{PREFIX}{module}.ia3_l" if ia3 else f"{PREFIX}{module}.{match['param']}.weight"] = (
            value * alpha if ia3 else value)
    r = int(options.get("r", 8))
    fused = _unfuse_qkv(folder, out, modules, options, ia3, r)
    sites = sorted({k[len(PREFIX):].rsplit(".", 2 if not ia3 else 1)[0] for k in out})
    targets = "|".join(re.escape(s) for s in sites)
    if ia3:
        return TUNERS["ia3"], IA3Config(target_modules=targets, feedforward_modules=[]), out
    n = fused or 1  # a fused site holds n ranks of r side by side: the same alpha / r per part
    return TUNERS["lora"], LoRAConfig(r=r * n, alpha=alpha * n, dropout=float(options.get("dropout", 0.0)),
                                      target_modules=targets), out


def _unfuse_qkv(folder: Path, out: dict[str, torch.Tensor], modules: dict, options: dict[str, Any], ia3: bool,
                r: int) -> int:
    """GPT-2's ``c_attn`` computes q, k and v in one matrix, and ``adapters`` adapts only the parts its
    ``attn_matrices`` name (its ``LoRAMergedLinear``): ``lora_A`` stacks one rank-r A per part, ``lora_B``
    one B per part, applied group by group. Rewritten here as one LoRA over the whole output (a
    block-diagonal B with zeros for the untouched parts) or one IA3 vector (ones there): the same
    delta. Returns how many parts each fused site adapts (0: none is fused)."""
    parts = [m for m in ("q", "k", "v") if m in (options.get("attn_matrices") or [])]
    fused = 0
    for key in [k for k in out if k.endswith(".lora_B.weight" if not ia3 else ".ia3_l")]:
        module = key[len(PREFIX):].rsplit(".", 2 if not ia3 else 1)[0]
        site = modules[module]
        width = site.weight.shape[1] if site.__class__.__name__ == "Conv1D" else site.weight.shape[0]
        value = out[key]
        if value.shape[0] == width:
            continue
        third = width // 3
        if width % 3 or not parts or value.shape[0] != third * len(parts):
            raise InvalidAdapterError(f"{folder}: {module!r} has {width} outputs; the adapter's {value.shape[0]} fit "
                                      f"no fused q/k/v split of attn_matrices {options.get('attn_matrices')}")
        fused += 1
        full = torch.ones(width, 1, dtype=value.dtype) if ia3 else torch.zeros(width, r * len(parts), dtype=value.dtype)
        for g, part in enumerate(parts):
            t = "qkv".index(part)
            rows = slice(t * third, (t + 1) * third)
            full[rows] = value[g * third:(g + 1) * third] if ia3 else 0
            if not ia3:
                full[rows, g * r:(g + 1) * r] = value[g * third:(g + 1) * third]
        out[key] = full
    sites = len([k for k in out if k.endswith(".lora_B.weight")])
    if not ia3 and fused and fused != sites:
        raise InvalidAdapterError(f"{folder}: LoRA on a fused q/k/v projection beside other modules (ranks {r * len(parts)} "
                                  f"and {r}) has no one-rank equivalent")
    return len(parts) if fused else 0


def read_head(folder: Path, model: AdapterModel) -> tuple[dict[str, torch.Tensor], list[str]] | None:
    """The head as module copies, and its labels in id order: a model's own head (``config: null``) as
    it is, or ``adapters``' two-layer tanh classification flex head (what AdapterHub's hub adapters
    carry) onto the model's own first-token head (`flex_head_modules`)."""
    if not (folder / af.HEAD_CONFIG_FILE).exists():
        return None
    head = read_json_object(folder / af.HEAD_CONFIG_FILE)
    tensors = read_safetensors(folder, af.HEAD_WEIGHTS_FILE, pickle="pytorch_model_head.bin")
    if head.get("config") is not None:
        tensors = flex_head_tensors(folder, head, tensors, model)
    label2id = head.get("label2id") or (head.get("config") or {}).get("label2id") or {}
    labels = [k for k, _ in sorted(label2id.items(), key=lambda kv: kv[1])]
    return {f"{PREFIX}{k}": v for k, v in tensors.items()}, labels


def flex_head_modules(model: AdapterModel) -> tuple[str, str] | None:
    """Where a first-token ``Linear, tanh, Linear`` head lives in the model's own classifier: BERT's
    pooler and classifier, RoBERTa's ``classifier.dense`` and ``classifier.out_proj``."""
    modules = dict(base_named_modules(model))
    for first, last in ((f"{model.base_model_prefix}.pooler.dense", "classifier"),
                        ("classifier.dense", "classifier.out_proj")):
        if first in modules and last in modules:
            return first, last
    return None


def flex_head_tensors(folder: Path, head: dict[str, Any], tensors: dict[str, torch.Tensor],
                      model: AdapterModel) -> dict[str, torch.Tensor]:
    config = head["config"]
    where = flex_head_modules(model)
    shape = (config.get("head_type"), config.get("layers"), str(config.get("activation_function")).lower(),
             bool(config.get("use_pooler")), config.get("bias", True))
    if shape != ("classification", 2, "tanh", False, True) or where is None:
        raise InvalidAdapterError(
            f"{folder}/{af.HEAD_CONFIG_FILE}: adapters' flex heads ({config.get('head_type', '?')}) are not mapped "
            f"but for a two-layer tanh classification head over the first token onto a {type(model).__name__} "
            f"that has one; load it without its head (remove {af.HEAD_CONFIG_FILE} and {af.HEAD_WEIGHTS_FILE})")
    name = head.get("name")
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        match = re.fullmatch(rf"heads\.{re.escape(str(name))}\.(?P<i>[14])\.(?P<p>weight|bias)", key)
        if match is None:
            raise InvalidAdapterError(f"{folder}/{af.HEAD_WEIGHTS_FILE}: unexpected tensor {key!r} for head {name!r}")
        out[f"{where[0] if match['i'] == '1' else where[1]}.{match['p']}"] = value
    return out
