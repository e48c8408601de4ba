"""Attaching prefix tuning: learned key/value prefixes entering every layer through the KV cache."""

from __future__ import annotations

from typing import Any

from torch import nn

from adapterhub.compose.tuners.config_base import first_attr
from adapterhub.compose.tuners.prefix.config import PrefixTuningConfig
from adapterhub.compose.tuners.prefix.layer import PrefixEncoder


def fill_defaults(config: PrefixTuningConfig, text_config: Any) -> None:
    """Prefixes are cached keys and values, so they take the KV heads' width (GQA models have fewer)."""
    hidden = first_attr(text_config, "hidden_size", "n_embd", "d_model")
    heads = first_attr(text_config, "num_attention_heads", "n_head", "num_heads")
    if config.num_layers is None:
        config.num_layers = first_attr(text_config, "num_hidden_layers", "n_layer", "num_layers")
    kv_heads = first_attr(text_config, "num_key_value_heads", default=heads)
    head_dim = first_attr(text_config, "head_dim", default=hidden // heads)
    if config.num_attention_heads is None:
        config.num_attention_heads = kv_heads
    if config.token_dim is None:
        config.token_dim = head_dim * kv_heads


def build_encoder(model: nn.Module, config: PrefixTuningConfig, tokenizer=None) -> PrefixEncoder:
    return PrefixEncoder(config)
