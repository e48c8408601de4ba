"""Does an adapter fit a base model, and which engines can serve it: judged from shapes alone.

The registry asks both at publish, before it writes anything: an adapter whose tensors do not fit
the base it names would fail only when someone loads it, far from the push that broke it. The
adapter side is its ``adapter_config.json`` and the shapes in its safetensors header; the base side
is the manifest `adapterhub.base_manifest` reads from the base's own headers. Standard library only,
so the server judges without torch.

The rules, per method (``in``/``out`` are the base module's input and output features):

- **LoRA** (PEFT's ``LORA``; our LoRA-FA saves as plain LoRA): ``lora_A.weight`` is ``[r, in]``,
  ``lora_B.weight`` ``[out, r]``, ``lora_B.bias`` and DoRA's ``lora_magnitude_vector`` ``[out]``; on
  an embedding, ``lora_embedding_A`` is ``[r, num_embeddings]`` and ``lora_embedding_B``
  ``[embedding_dim, r]``. A Linear weight is ``[out, in]``; GPT-2's Conv1D stores ``[in, out]``.
  PEFT decides that per module (by its class), and our engine does not write ``fan_in_fan_out``, so
  the Conv1D modules of the Conv1D families (`CONV1D_MODEL_TYPES`: ``c_attn``, ``c_proj``, ``c_fc``)
  are read as ``[in, out]`` whatever the config says; in other families ``fan_in_fan_out: true``
  is believed.
- **IA³**: ``ia3_l`` is ``[out, 1]``, or ``[1, in]`` on a module ``feedforward_modules`` names
  (PEFT's matching: a regex in full, or a name suffix).
- **Bottleneck** (ours, Pfeiffer and Houlsby): the adapter reads and writes its module's output,
  so ``adapter_down.weight`` is ``[width, out]``, ``adapter_up.weight`` ``[out, width]`` and
  ``adapter_up.bias`` ``[out]`` (``out`` is the hidden size at the sites the placements choose).
- **Prompt tuning**: ``prompt_embeddings`` is ``[tokens, hidden_size]``.
- **Prefix tuning**: ``prompt_embeddings`` is ``[tokens, num_hidden_layers * 2 * kv]``, a key and a
  value per layer, ``kv = num_key_value_heads * head_dim`` (PEFT's
  ``_prepare_prompt_learning_config`` and our engine size a grouped-query model's prefix so).

Each tensor's module is looked up in the manifest as the key says (``base_model.model.`` and the
tensor's own name taken off), then without its first segment (``bert.encoder...`` of a
BertForSequenceClassification against a BertModel's ``encoder...``), then against the manifest's
paths without theirs. A tensor naming no module of the base is refused. Tensors of
``modules_to_save`` (a classifier head: new, not the base's) and tensors of a kind the rules do not
know are not judged; nor is an adapter of another method (None: the caller records that nothing
was checked). AdapterHub's ``adapters`` folders name their tensors otherwise and are judged by
``adapters_compat.adapters_incompatibility``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from adapterhub.format import CONFIG_FILE
from adapterhub.vocab import MethodInfo, method_named

SITE_PREFIX = "base_model.model."  # PEFT wraps the model once more for site methods
PROMPT_PREFIX = "base_model."  # and not for prompt learning
PROMPT_KEY = "prompt_embeddings"
CONV1D_MODEL_TYPES = frozenset({"gpt2", "openai-gpt", "imagegpt", "decision_transformer"})
CONV1D_NAMES = frozenset({"c_attn", "c_proj", "c_fc", "q_attn"})
# the modules vLLM, SGLang and LoRAX apply LoRA to in the decoder LLMs they serve
DECODER_TARGETS = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                             "qkv_proj", "gate_up_proj"})
LORA_SERVERS = ("vllm", "sglang", "lorax")

SITE_TENSORS = {  # what each site method saves per module, as (module).(param)
    "lora": re.compile(r"(?P<module>.+)\.(?P<param>lora_[AB]\.weight|lora_B\.bias|lora_embedding_[AB]"
                       r"|lora_magnitude_vector(?:\.weight)?)"),
    "ia3": re.compile(r"(?P<module>.+)\.(?P<param>ia3_l)"),
    "bottleneck": re.compile(r"(?P<module>.+)\.(?P<param>adapter_(?:down|up|norm_before|norm_after)\.(?:weight|bias))"),
}
OUR_TENSORS = {  # what our engine loads of them
    "lora": re.compile(r".+\.lora_[AB]\.weight"),
    "ia3": SITE_TENSORS["ia3"],
    "bottleneck": SITE_TENSORS["bottleneck"],
}
PLAIN_LORA = re.compile(r"(?:.+\.)?(?P<target>[^.]+)\.lora_[AB]\.weight")


@dataclass
class _Base:
    """The manifest's side: module look-up (tolerating a head model's prefix) and orientation."""

    manifest: dict[str, Any]
    name: str
    modules: dict[str, dict[str, Any]] = field(init=False)
    stripped: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.modules = self.manifest.get("modules") or {}
        self.stripped = {}
        for path in self.modules:
            if "." in path:
                self.stripped.setdefault(path.split(".", 1)[1], path)

    def find(self, path: str) -> str | None:
        if path in self.modules:
            return path
        rest = path.split(".", 1)[1] if "." in path else None
        if rest is not None and rest in self.modules:
            return rest
        return self.stripped.get(path)

    def in_out(self, path: str, fan_in_fan_out: Any, embedding: bool = False) -> tuple[int, int] | None:
        """(in, out) of the module's weight; None where it is not a 2-D weight (nothing to judge)."""
        weight = self.modules[path].get("weight")
        if not isinstance(weight, list) or len(weight) != 2 or not all(type(d) is int for d in weight):
            return None
        if self.manifest.get("model_type") in CONV1D_MODEL_TYPES:
            stored_in_out = path.rsplit(".", 1)[-1] in CONV1D_NAMES
        else:
            stored_in_out = bool(fan_in_fan_out)
        if embedding or stored_in_out:  # an embedding is [num_embeddings, dim]: "in" is a token id
            return weight[0], weight[1]
        return weight[1], weight[0]


def incompatibility(config: dict[str, Any], tensors: dict[str, list[int]], manifest: dict[str, Any],
                    base: str | None = None) -> str | None:
    """None when every tensor of the adapter fits the base ``manifest`` describes (or the method is
    one the rules do not know); else one sentence naming the first tensor, by name, that does not
    and the shape it would need. ``base`` names the base in it (default: the manifest's ``id``)."""
    method = _method(config)
    if method is None:
        return None
    the_base = _Base(manifest, base or manifest.get("id") or manifest.get("architecture") or "the base model")
    heads = _heads(config)
    for name in sorted(tensors):
        if name == "__metadata__":
            continue
        shape = list(tensors[name])
        if method.virtual_tokens:
            if name.rsplit(".", 1)[-1] == PROMPT_KEY:
                problem = (_prefix if method.name == "prefix_tuning" else _prompt)(name, shape, config, the_base)
                if problem:
                    return problem
            continue  # the rest of a prompt-learning folder is its heads
        path = _strip(name, method)
        if _is_head(path, heads):
            continue
        match = SITE_TENSORS[method.name].fullmatch(path)
        if match is None:
            continue  # not a tensor of this method: nothing to judge it by
        module = the_base.find(match["module"])
        if module is None:
            return f"{name} names module {match['module']}, which {the_base.name} does not have"
        problem = _SITE_CHECKS[method.name](name, shape, match, module, config, the_base)
        if problem:
            return problem
    return None


def serving_engines(config: dict[str, Any], tensors: dict[str, list[int]]) -> list[str]:
    """The engines that can serve this adapter, judged from its config and tensor names alone.

    - ``peft``: every method of ours that PEFT has (``adapterhub.vocab``: PEFT's ``peft_type``);
      PEFT reads every option of its own format.
    - ``adapterhub`` (our engine): a method of ours whose tensors are all ones our tuners load (or
      ``modules_to_save`` heads); not DoRA (``use_dora``), LoRA on embeddings, LoRA biases or
      per-module ranks and alphas (``rank_pattern``, ``alpha_pattern``), which our LoRA would read
      as plain LoRA and get wrong.
    - ``vllm``, ``sglang``, ``lorax``: plain LoRA only, every tensor a ``lora_A``/``lora_B`` weight
      on a decoder LLM's attention or MLP projection (`DECODER_TARGETS`). These servers batch LoRA
      onto those projections of the decoder models they load; they do not load DoRA, new heads
      (``modules_to_save``), LoRA on embeddings or on an encoder's modules, and per-module ranks
      are not theirs to promise either. What fails these rules may still load in one of them in
      some version; what passes loads in all of them.

    An adapter of a method we do not know gets no engine: nothing here can vouch for it.
    """
    method = _method(config)
    if method is None:
        return []
    heads = _heads(config)
    names = [_strip(n, method) for n in tensors if n != "__metadata__"]
    own = [n for n in names if not (method.at_sites and _is_head(n, heads)) and not
           (method.virtual_tokens and n.rsplit(".", 1)[-1] != PROMPT_KEY)]
    plain = not config.get("use_dora") and not config.get("rank_pattern") and not config.get("alpha_pattern")
    engines = ["peft"] if method.peft_type else []
    ours = OUR_TENSORS.get(method.name)
    if plain and all((ours.fullmatch(n) if ours else n == PROMPT_KEY) for n in own):
        engines.append("adapterhub")
    if method.name == "lora" and plain and names and config.get("bias", "none") == "none":
        matches = [PLAIN_LORA.fullmatch(n) for n in names]
        if all(m and m["target"] in DECODER_TARGETS for m in matches):
            engines += LORA_SERVERS
    return engines


# ---------------------------------------------------------------------- one method each
def _lora(name: str, shape: list[int], match: re.Match, module: str, config: dict, base: _Base) -> str | None:
    param = match["param"]
    embedding = param.startswith("lora_embedding")
    dims = base.in_out(module, config.get("fan_in_fan_out"), embedding=embedding)
    if dims is None:
        return None
    n_in, n_out = dims
    rank = config.get("r")
    short = param.removesuffix(".weight")
    if param in ("lora_A.weight", "lora_embedding_A"):
        needed, says = [shape[0] if len(shape) == 2 else rank, n_in], (
            f"has {n_in} embeddings" if embedding else f"takes {n_in} inputs")
    elif param in ("lora_B.weight", "lora_embedding_B"):
        needed, says = [n_out, shape[1] if len(shape) == 2 else rank], (
            f"embeds in {n_out} dimensions" if embedding else f"gives {n_out} outputs")
    else:  # lora_B.bias, lora_magnitude_vector
        needed, says = [n_out], f"gives {n_out} outputs"
    return _unless(shape == needed, name, shape, module, base, says, short, needed)


def _ia3(name: str, shape: list[int], match: re.Match, module: str, config: dict, base: _Base) -> str | None:
    dims = base.in_out(module, config.get("fan_in_fan_out"))
    if dims is None:
        return None
    n_in, n_out = dims
    if _is_feedforward(match["module"], config.get("feedforward_modules")):
        return _unless(shape == [1, n_in], name, shape, module, base, f"takes {n_in} inputs",
                       "ia3_l of a feedforward module", [1, n_in])
    return _unless(shape == [n_out, 1], name, shape, module, base, f"gives {n_out} outputs", "ia3_l", [n_out, 1])


def _bottleneck(name: str, shape: list[int], match: re.Match, module: str, config: dict, base: _Base) -> str | None:
    param = match["param"]
    dims = base.in_out(module, None)
    n_out = dims[1] if dims else base.manifest.get("hidden_size")
    if type(n_out) is not int or param == "adapter_down.bias":
        return None  # the down projection's bias is as wide as the bottleneck, the adapter's own choice
    width = max(1, n_out // int(config.get("reduction_factor") or 16))
    if len(shape) == 2:
        width = shape[0] if param == "adapter_down.weight" else shape[1]
    needed = {"adapter_down.weight": [width, n_out], "adapter_up.weight": [n_out, width]}.get(param, [n_out])
    return _unless(shape == needed, name, shape, module, base, f"gives {n_out} outputs",
                   param.removesuffix(".weight"), needed)


_SITE_CHECKS = {"lora": _lora, "ia3": _ia3, "bottleneck": _bottleneck}


def _prompt(name: str, shape: list[int], config: dict, base: _Base) -> str | None:
    hidden = base.manifest.get("hidden_size")
    if type(hidden) is not int:
        return None
    tokens = shape[0] if shape else config.get("num_virtual_tokens")
    needed = [tokens, hidden]
    if shape == needed:
        return None
    return f"{name} is {shape}; {base.name} embeds tokens in {hidden} dimensions, so {tokens} virtual tokens need {needed}"


def _prefix(name: str, shape: list[int], config: dict, base: _Base) -> str | None:
    m = base.manifest
    layers, kv_heads, head_dim = m.get("num_hidden_layers"), m.get("num_key_value_heads"), m.get("head_dim")
    if type(head_dim) is not int and type(m.get("hidden_size")) is int and type(m.get("num_attention_heads")) is int:
        head_dim = m["hidden_size"] // m["num_attention_heads"]
    if type(kv_heads) is not int:
        kv_heads = m.get("num_attention_heads")
    if not all(type(v) is int for v in (layers, kv_heads, head_dim)):
        return None
    kv = kv_heads * head_dim
    tokens = shape[0] if shape else config.get("num_virtual_tokens")
    needed = [tokens, layers * 2 * kv]
    facts = (f"{base.name} has {layers} layers whose keys and values are {kv} wide, "
             f"so a prefix of {tokens} virtual tokens needs {needed}")
    if shape != needed:
        return f"{name} is {shape}; {facts}"
    said = config.get("num_layers")
    if type(said) is int and said != layers:
        return f"{name} is a prefix for {said} layers (num_layers in {CONFIG_FILE}); {facts}"
    return None


# ---------------------------------------------------------------------- helpers
def _unless(fits: bool, name: str, shape: list[int], module: str, base: _Base, says: str, short: str,
            needed: list) -> str | None:
    if fits:
        return None
    return f"{name} is {shape}; module {module} of {base.name} {says}, so {short} needs {needed}"


def _method(config: dict[str, Any]) -> MethodInfo | None:
    peft_type = config.get("peft_type") if isinstance(config, dict) else None
    if not isinstance(peft_type, str) or not peft_type:
        return None
    try:
        return method_named(peft_type)
    except ValueError:
        return None


def _strip(name: str, method: MethodInfo) -> str:
    """The tensor's path in the model PEFT wrapped: its wrapper's prefix taken off."""
    for prefix in ((SITE_PREFIX, PROMPT_PREFIX) if method.at_sites else (PROMPT_PREFIX,)):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _heads(config: dict[str, Any]) -> list[str]:
    listed = config.get("modules_to_save")
    if isinstance(listed, str):
        return [listed]
    return [h for h in listed or () if isinstance(h, str) and h]


def _is_head(path: str, heads: list[str]) -> bool:
    """A tensor of a ``modules_to_save`` copy: under a module whose name ends with a listed one
    (PEFT's rule), or saved under PEFT's ``modules_to_save`` wrapper."""
    dotted = f".{path}."
    return ".modules_to_save." in dotted or any(f".{head}." in dotted for head in heads)


def _is_feedforward(path: str, patterns: Any) -> bool:
    """PEFT's test (``_check_target_module_feedforward``): a string is a regex for the full
    name, a list holds name suffixes."""
    if isinstance(patterns, str):
        return re.fullmatch(patterns, path) is not None
    return any(isinstance(p, str) and path.endswith(p) for p in patterns or ())


def header_shapes(header: dict[str, Any] | None) -> dict[str, list[int]]:
    """name -> shape from an already checked safetensors header (``__metadata__`` left out): what
    `incompatibility` takes, from the registry's header checks."""
    return {k: list(v["shape"]) for k, v in (header or {}).items() if k != "__metadata__" and isinstance(v, dict)}
