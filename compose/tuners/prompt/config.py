"""Prompt tuning (Lester et al., 2021): trainable virtual tokens prepended to the input embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.errors import InvalidAdapterError
from adapterhub.vocab import METHODS

INITS = ("RANDOM", "SAMPLE_VOCAB", "TEXT")


@dataclass
class PromptTuningConfig(AdapterConfig):
    """``num_virtual_tokens`` embeddings before the input; init random, from the vocabulary or a text.

    >>> PromptTuningConfig(num_virtual_tokens=20).peft_type
    'PROMPT_TUNING'
    """

    num_virtual_tokens: int = field(default=20, metadata={"help": "How many virtual tokens to prepend."})
    prompt_tuning_init: str = field(default="RANDOM", metadata={"help": "RANDOM, SAMPLE_VOCAB or TEXT."})
    prompt_tuning_init_text: str | None = field(default=None, metadata={"help": "Text whose tokens seed the prompt."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "Local tokenizer for TEXT init."})
    token_dim: int | None = field(default=None, metadata={"help": "Filled from the model."})
    num_transformer_submodules: int = field(default=1, metadata={"help": "1 for decoder-only and encoders."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Filled from the model."})
    num_layers: int | None = field(default=None, metadata={"help": "Filled from the model."})

    method: ClassVar[str] = "prompt_tuning"
    peft_type: ClassVar[str | None] = METHODS[method].peft_type
    PEFT_OMITS: ClassVar[tuple[str, ...]] = ("target_modules",)  # PEFT's PromptLearningConfig has none

    def __post_init__(self) -> None:
        self._require_positive(num_virtual_tokens=self.num_virtual_tokens)
        self.prompt_tuning_init = str(self.prompt_tuning_init).upper()
        if self.prompt_tuning_init not in INITS:
            raise InvalidAdapterError(
                f"PromptTuningConfig.prompt_tuning_init must be one of {INITS}, got {self.prompt_tuning_init!r}"
            )
        if self.prompt_tuning_init == "TEXT" and not self.prompt_tuning_init_text:
            raise InvalidAdapterError("PromptTuningConfig: prompt_tuning_init='TEXT' needs prompt_tuning_init_text")
