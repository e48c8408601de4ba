"""Per-architecture facts, in one table: where each method attaches by default.

A new architecture whose module names are conventional needs only a row here (or an alias to an
existing row in `MODEL_TYPE_ALIASES`). Patterns in ``*_sites`` are regular expressions matched with
``fullmatch`` against full module names; ``*_targets`` are name suffixes, as in PEFT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from adapterhub.errors import InvalidAdapterError


@dataclass(frozen=True)
class Sublayer:
    """A sublayer a bottleneck adapter closes, as ``adapters`` sees it. Templates name modules from
    ``b``, the block's path (``block``, a regex): the output projection is ``{b}`` + ``site``; the
    residual input is positional argument ``residual_arg`` of ``residual``; ``layer_norm`` is the
    sublayer's own post-LayerNorm (post-LN models; None pre-LN, where the block only adds the
    residual); ``adapters_at`` is where ``adapters`` keeps the sublayer's adapters (its key prefix)."""

    block: str
    site: str
    residual: str
    residual_arg: int
    adapters_at: str
    layer_norm: str | None = None

    @property
    def site_pattern(self) -> str:
        return f"(?P<b>{self.block}){re.escape(self.site)}"

    @property
    def adapters_pattern(self) -> str:
        head, tail = self.adapters_at.split("{b}")
        return f"{re.escape(head)}(?P<b>{self.block}){re.escape(tail)}"


@dataclass(frozen=True)
class ArchSpec:
    lora_targets: tuple[str, ...]
    ia3_targets: tuple[str, ...]
    ia3_feedforward: tuple[str, ...]
    attn_output_sites: tuple[str, ...]
    ffn_output_sites: tuple[str, ...]
    all_linear: tuple[str, ...]
    sublayers: tuple[Sublayer, ...] = ()


ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec(
        lora_targets=("q_proj", "v_proj"),
        ia3_targets=("k_proj", "v_proj", "down_proj"),
        ia3_feedforward=("down_proj",),
        attn_output_sites=(r".*\.self_attn\.o_proj",),
        ffn_output_sites=(r".*\.mlp\.down_proj",),
        all_linear=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        sublayers=(Sublayer(r".*\.layers\.\d+", ".self_attn.o_proj", "{b}.input_layernorm", 0,
                            "{b}.attention_adapters.adapters"),
                   Sublayer(r".*\.layers\.\d+", ".mlp.down_proj", "{b}.post_attention_layernorm", 0,
                            "{b}.output_adapters.adapters")),
    ),
    "gpt2": ArchSpec(
        lora_targets=("c_attn",),
        ia3_targets=("c_attn", "mlp.c_proj"),
        ia3_feedforward=("mlp.c_proj",),
        attn_output_sites=(r".*\.attn\.c_proj",),
        ffn_output_sites=(r".*\.mlp\.c_proj",),
        all_linear=("c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"),
        sublayers=(Sublayer(r".*\.h\.\d+", ".attn.c_proj", "{b}.ln_1", 0, "{b}.attention_adapters.adapters"),
                   Sublayer(r".*\.h\.\d+", ".mlp.c_proj", "{b}.ln_2", 0, "{b}.output_adapters.adapters")),
    ),
    "bert": ArchSpec(
        lora_targets=("query", "value"),
        ia3_targets=("key", "value", "output.dense"),
        ia3_feedforward=("output.dense",),
        attn_output_sites=(r".*\.attention\.output\.dense",),
        ffn_output_sites=(r".*\.layer\.\d+\.output\.dense",),
        all_linear=("query", "key", "value", "dense"),
        sublayers=(Sublayer(r".*\.attention\.output", ".dense", "{b}", 1, "{b}.adapters", "{b}.LayerNorm"),
                   Sublayer(r".*\.layer\.\d+\.output", ".dense", "{b}", 1, "{b}.adapters", "{b}.LayerNorm")),
    ),
}

MODEL_TYPE_ALIASES = {
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "gemma": "llama",
    "olmo": "llama",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "electra": "bert",
}


def arch_spec(model_type: str) -> ArchSpec:
    """The spec for a ``config.model_type``; raise naming the supported types when there is none."""
    key = MODEL_TYPE_ALIASES.get(model_type, model_type)
    if key not in ARCHITECTURES:
        known = sorted({*ARCHITECTURES, *MODEL_TYPE_ALIASES})
        raise InvalidAdapterError(
            f"no default target modules for model_type {model_type!r}; pass target_modules explicitly "
            f"(known architectures: {', '.join(known)})"
        )
    return ARCHITECTURES[key]
