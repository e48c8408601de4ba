"""Per-architecture facts, in one table: where each method attaches by default.

A new architecture whose module names are conventional needs only a row here (or an alias to an
existing row in `MODEL_TYPE_ALIASES`). Patterns in ``*_sites`` are regular expressions matched with
``fullmatch`` against full module names; ``*_targets`` are name suffixes, as in PEFT.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapterhub.errors import InvalidAdapterError


@dataclass(frozen=True)
class ArchSpec:
    lora_targets: tuple[str, ...]
    ia3_targets: tuple[str, ...]
    ia3_feedforward: tuple[str, ...]
    attn_output_sites: tuple[str, ...]
    ffn_output_sites: tuple[str, ...]
    all_linear: tuple[str, ...]


ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec(
        lora_targets=("q_proj", "v_proj"),
        ia3_targets=("k_proj", "v_proj", "down_proj"),
        ia3_feedforward=("down_proj",),
        attn_output_sites=(r".*\.self_attn\.o_proj",),
        ffn_output_sites=(r".*\.mlp\.down_proj",),
        all_linear=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ),
    "gpt2": ArchSpec(
        lora_targets=("c_attn",),
        ia3_targets=("c_attn", "mlp.c_proj"),
        ia3_feedforward=("mlp.c_proj",),
        attn_output_sites=(r".*\.attn\.c_proj",),
        ffn_output_sites=(r".*\.mlp\.c_proj",),
        all_linear=("c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"),
    ),
    "bert": ArchSpec(
        lora_targets=("query", "value"),
        ia3_targets=("key", "value", "output.dense"),
        ia3_feedforward=("output.dense",),
        attn_output_sites=(r".*\.attention\.output\.dense",),
        ffn_output_sites=(r".*\.layer\.\d+\.output\.dense",),
        all_linear=("query", "key", "value", "dense"),
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
