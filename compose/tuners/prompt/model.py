"""Attaching prompt tuning: learned input embeddings prepended to every sequence."""

from __future__ import annotations

from typing import Any

from torch import nn

from adapterhub.compose.tuners.config_base import first_attr
from adapterhub.compose.tuners.prompt.config import PromptTuningConfig
from adapterhub.compose.tuners.prompt.layer import PromptEmbedding
from adapterhub.errors import InvalidAdapterError


def fill_defaults(config: PromptTuningConfig, text_config: Any) -> None:
    if config.num_layers is None:
        config.num_layers = first_attr(text_config, "num_hidden_layers", "n_layer", "num_layers")
    config.num_attention_heads = config.num_attention_heads or first_attr(
        text_config, "num_attention_heads", "n_head", "num_heads")
    config.token_dim = config.token_dim or first_attr(text_config, "hidden_size", "n_embd", "d_model")


def build_encoder(model: nn.Module, config: PromptTuningConfig, tokenizer=None) -> PromptEmbedding:
    """The prompt embedding, initialised as PEFT does (random, sampled vocabulary, or a text's tokens)."""
    token_ids = None
    if config.prompt_tuning_init == "TEXT":
        if tokenizer is None and config.tokenizer_name_or_path:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_name_or_path, local_files_only=True)
        if tokenizer is None:
            raise InvalidAdapterError(
                "prompt_tuning_init='TEXT' needs a tokenizer: pass tokenizer= to add_adapter "
                "or a local tokenizer_name_or_path"
            )
        token_ids = tokenizer(config.prompt_tuning_init_text, add_special_tokens=False)["input_ids"]
    return PromptEmbedding(config, model.get_input_embeddings(), token_ids)
