"""Does an AdapterHub ``adapters`` folder fit a base model: `base_compat` for ``adapters``' tensor names.

Tensor names as ``adapters`` 1.3 saves them (the full model's keys, a head model's prefix included):
a bottleneck at a site ``<site>.adapters.<name>.``, LoRA and IA³ inside the module they adapt
``<module>.loras.<name>.``, prompt and prefix tuning under ``prompt_tunings`` / ``prefix_tunings``, a
fusion under ``adapter_fusion_layer.<names>.``. Standard library only, like ``base_compat``, whose
module lookups and sentences it shares.
"""

from __future__ import annotations

import re
from typing import Any

from adapterhub.base_compat import CONV1D_MODEL_TYPES, _Base, _unless

ADAPTERS_BOTTLENECK = re.compile(r"(?P<site>.+?)\.adapters\.(?P<name>.+)\.(?P<param>adapter_down\.\d+\.(?:weight|bias)"
                                 r"|adapter_up\.(?:weight|bias)|adapter_norm_(?:before|after)\.(?:weight|bias))")
ADAPTERS_LORA = re.compile(r"(?P<module>.+?)\.loras\.(?P<name>.+)\.(?P<param>lora_[AB])")
ADAPTERS_PROMPT = re.compile(r".+\.prompt_tunings\.(?P<name>.+)\.prompt_embedding\.weight")
ADAPTERS_PREFIX = re.compile(r".+\.prefix_tunings\.(?P<name>.+)\.(?:self|cross)_prefix\."
                             r"(?P<param>wte\.weight|control_trans\.[02]\.(?:weight|bias))")
ADAPTERS_FUSION = re.compile(r"(?P<site>.+?)\.adapter_fusion_layer\.(?P<name>.+)\.(?P<param>(?:query|key|value)\.(?:weight|bias))")
LAYER_PATH = re.compile(r"(?P<layers>.*?\.(?:layer|layers|h|block|blocks))\.(?P<i>\d+)(?:\.|$)")
MERGED_QKV = frozenset({"c_attn"})  # adapters' LoRAMergedLinear: LoRA over some of GPT-2's fused q, k, v


def adapters_incompatibility(config: dict[str, Any], files: dict[str, dict[str, list[int]]], manifest: dict[str, Any],
                             base: str | None = None) -> str | None:
    """`incompatibility` for an ``adapters`` folder: None when its config and every tensor judged fit
    the base ``manifest`` describes, else one sentence naming the first that does not.

    ``files`` maps the folder's safetensors files (``adapter.safetensors``, ``model_head.safetensors``,
    ``model_adapter_fusion.safetensors``) to their tensor shapes. Judged, with ``H`` the base's hidden
    size: the config's ``model_type`` and ``hidden_size``; a bottleneck's down projection
    ``adapter_down.<i>.weight`` ``[d, H]`` and its bias ``[d]``, ``adapter_up.weight`` ``[H, d]`` (the
    same ``d``), ``adapter_up.bias`` and its layer norms ``[H]``, on a layer the base has; LoRA's
    ``lora_A`` ``[r, in]`` and ``lora_B`` ``[out, r]`` (IA³'s ``[out, 1]``) on a module of the base
    (GPT-2's fused ``c_attn``: ``lora_A`` ``[r*n, in]``, ``lora_B`` ``[out/3*n, r]``); prompt tuning's
    embedding ``[tokens, H]``; prefix tuning's ``wte`` and first ``control_trans`` layer ``H`` wide,
    its last ``num_hidden_layers * 2 * kv``; a fusion's query, key and value ``[H, H]`` on a layer the
    base has; a head's weights as wide as the base module they replace. Not judged: PHM, gating and
    VeRA tensors, a flat prefix, flex heads (their modules are not the base's), and the subfolders of
    an ``adapter_setup.json`` folder."""
    the_base = _Base(manifest, base or manifest.get("id") or manifest.get("architecture") or "the base model")
    hidden, layers = manifest.get("hidden_size"), manifest.get("num_hidden_layers")
    said_type, base_type = config.get("model_type"), manifest.get("model_type")
    if isinstance(said_type, str) and isinstance(base_type, str) and said_type != base_type:
        return f"the adapters config is for a {said_type} model (model_type); {the_base.name} is a {base_type}"
    said = config.get("hidden_size")
    if type(said) is int and type(hidden) is int and said != hidden:
        return (f"the adapters config says hidden_size {said}; {the_base.name} has hidden size {hidden}, "
                "so its tensors cannot fit")
    options = config.get("config") if isinstance(config.get("config"), dict) else {}
    rank = options.get("r") if type(options.get("r")) is int else None
    for file in sorted(files):
        tensors = files[file]
        widths: dict[str, tuple[str, int]] = {}  # a bottleneck site's down projection: its index, its d
        for name in sorted(tensors, key=_down_first):
            if name == "__metadata__":
                continue
            shape = list(tensors[name])
            problem = (_adapters_head(name, shape, the_base) if file == "model_head.safetensors"
                       else _adapters_tensor(name, shape, the_base, hidden, layers, rank, widths))
            if problem:
                return f"{file}: {problem}"
    return None


def _adapters_tensor(name: str, shape: list[int], base: _Base, hidden: Any, layers: Any, rank: int | None,
                     widths: dict[str, tuple[str, int]]) -> str | None:
    H = hidden if type(hidden) is int else None
    if (m := ADAPTERS_BOTTLENECK.fullmatch(name)) is not None:
        problem = _layer_problem(name, m["site"], base, layers)
        if problem or H is None:
            return problem
        site, param = m["site"] + "." + m["name"], m["param"]
        down = re.fullmatch(r"adapter_down\.(\d+)\.(weight|bias)", param)
        if down and down[2] == "weight" and len(shape) == 2:  # the down projection (after a LayerNorm with ln_before)
            widths[site] = (down[1], shape[0])
            needed = [shape[0], H]
        elif down and down[2] == "bias" and widths.get(site, ("", 0))[0] == down[1]:
            needed = [widths[site][1]]
        elif param == "adapter_up.weight":
            needed = [H, widths[site][1] if site in widths else (shape[1] if len(shape) == 2 else "d")]
        else:  # the up projection's bias, a LayerNorm's weight or bias
            needed = [H]
        return _unless_h(shape == needed, name, shape, base, H, needed)
    if (m := ADAPTERS_LORA.fullmatch(name)) is not None:
        module = base.find(m["module"])
        if module is None:
            return f"{name} names module {m['module']}, which {base.name} does not have"
        dims = base.in_out(module, None)
        if dims is None:
            return None
        n_in, n_out = dims
        merged = base.manifest.get("model_type") in CONV1D_MODEL_TYPES and module.rsplit(".", 1)[-1] in MERGED_QKV
        if m["param"] == "lora_A":
            r = shape[0] if len(shape) == 2 and rank is None else rank
            if merged and rank and len(shape) == 2 and shape[0] in (rank, 2 * rank, 3 * rank):
                r = shape[0]  # r for each of the n matrices of q, k, v it adapts
            return _unless(shape == [r, n_in], name, shape, module, base, f"takes {n_in} inputs", "lora_A", [r, n_in])
        r = shape[1] if len(shape) == 2 and rank is None else rank
        if merged:
            third = n_out // 3
            fits = len(shape) == 2 and shape[1] == r and third > 0 and shape[0] in (third, 2 * third, 3 * third)
            return _unless(fits, name, shape, module, base, f"gives {n_out} outputs (q, k, v)", "lora_B",
                           [f"{third}|{2 * third}|{3 * third}", r])
        return _unless(shape == [n_out, r], name, shape, module, base, f"gives {n_out} outputs", "lora_B", [n_out, r])
    if (m := ADAPTERS_PROMPT.fullmatch(name)) is not None:
        if H is None:
            return None
        needed = [shape[0] if shape else "tokens", H]
        return _unless_h(shape == needed, name, shape, base, H, needed)
    if (m := ADAPTERS_PREFIX.fullmatch(name)) is not None:
        if m["param"] == "control_trans.0.bias":
            return None  # as wide as the prefix's own bottleneck
        if m["param"] in ("wte.weight", "control_trans.0.weight"):
            if H is None:
                return None
            needed = [shape[0] if shape else "n", H]
            return _unless_h(shape == needed, name, shape, base, H, needed)
        kv = _kv_width(base.manifest)
        if kv is None or type(layers) is not int:
            return None
        out = layers * 2 * kv
        needed = [out, shape[1] if len(shape) == 2 else "n"] if m["param"].endswith("weight") else [out]
        if shape == needed:
            return None
        return (f"{name} is {shape}; {base.name} has {layers} layers whose keys and values are {kv} wide, "
                f"so it needs {needed}")
    if (m := ADAPTERS_FUSION.fullmatch(name)) is not None:
        problem = _layer_problem(name, m["site"], base, layers)
        if problem or H is None:
            return problem
        needed = [H, H] if m["param"].endswith("weight") else [H]
        return _unless_h(shape == needed, name, shape, base, H, needed)
    return None


def _down_first(name: str) -> tuple[int, str]:
    """A bottleneck's down projection before the rest of its site, its up projection last."""
    down_weight = ".adapter_down." in name and name.endswith(".weight")
    return (0 if down_weight else 2 if ".adapter_up." in name else 1, name)


def _adapters_head(name: str, shape: list[int], base: _Base) -> str | None:
    """A static head's tensor replaces the base module of its name: as wide as its input."""
    module_path, _, param = name.rpartition(".")
    module = base.find(module_path) if module_path else None
    if module is None or param != "weight" or len(shape) != 2:
        return None
    dims = base.in_out(module, None)
    if dims is None or shape[1] == dims[0]:
        return None
    return f"{name} is {shape}; module {module} of {base.name} takes {dims[0]} inputs, so it needs [{shape[0]}, {dims[0]}]"


def _layer_problem(name: str, site: str, base: _Base, layers: Any) -> str | None:
    """A bottleneck's site must lie in a layer the base has (its modules are the adapter's own)."""
    m = LAYER_PATH.match(site)
    if m is None:
        return None
    i = int(m["i"])
    if type(layers) is int and i >= layers:
        return f"{name} sits in layer {i}; {base.name} has {layers} layers"
    prefix = f"{m['layers']}.{i}."
    short = prefix.split(".", 1)[1] if "." in prefix[:-1] else None
    if any(p.startswith(prefix) or (short and p.startswith(short)) for p in base.modules) or any(
            s.startswith(prefix) for s in base.stripped):
        return None
    return f"{name} sits in {m['layers']}.{i}, which {base.name} does not have"


def _kv_width(m: dict[str, Any]) -> int | None:
    head_dim, kv_heads = m.get("head_dim"), m.get("num_key_value_heads")
    if type(head_dim) is not int and type(m.get("hidden_size")) is int and type(m.get("num_attention_heads")) is int:
        head_dim = m["hidden_size"] // m["num_attention_heads"]
    if type(kv_heads) is not int:
        kv_heads = m.get("num_attention_heads")
    return kv_heads * head_dim if type(kv_heads) is int and type(head_dim) is int else None


def _unless_h(fits: bool, name: str, shape: list[int], base: _Base, hidden: int, needed: list) -> str | None:
    if fits:
        return None
    return f"{name} is {shape}; {base.name} has hidden size {hidden}, so it needs {needed}"
