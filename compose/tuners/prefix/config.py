"""Prefix tuning (Li & Liang, 2021): trainable key/value prefixes at every attention layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.vocab import METHODS


@dataclass
class PrefixTuningConfig(AdapterConfig):
    """``num_virtual_tokens`` key/value pairs per layer, optionally through a reparameterisation MLP.

    >>> PrefixTuningConfig(num_virtual_tokens=20, prefix_projection=True).peft_type
    'PREFIX_TUNING'
    """

    num_virtual_tokens: int = field(default=20, metadata={"help": "Prefix length per layer."})
    prefix_projection: bool = field(default=False, metadata={"help": "Train through an MLP (more stable)."})
    encoder_hidden_size: int | None = field(default=None, metadata={"help": "MLP width; defaults to token_dim."})
    token_dim: int | None = field(default=None, metadata={"help": "Filled from the model (KV width)."})
    num_transformer_submodules: int = field(default=1, metadata={"help": "1 for decoder-only and encoders."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Filled from the model (KV heads)."})
    num_layers: int | None = field(default=None, metadata={"help": "Filled from the model."})

    method: ClassVar[str] = "prefix_tuning"
    peft_type: ClassVar[str | None] = METHODS[method].peft_type
    PEFT_OMITS: ClassVar[tuple[str, ...]] = ("target_modules",)  # PEFT's PromptLearningConfig has none

    def __post_init__(self) -> None:
        self._require_positive(num_virtual_tokens=self.num_virtual_tokens)
