"""LoRA (Hu et al., 2021) and LoRA-FA (Zhang et al., 2023) as a training option of LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.errors import InvalidAdapterError
from adapterhub.vocab import METHODS


@dataclass
class LoRAConfig(AdapterConfig):
    """Low-rank update ``W + (alpha/r) B A`` on each target module.

    >>> LoRAConfig(r=16, alpha=32, target_modules=["q_proj", "v_proj"]).scaling
    2.0
    """

    r: int = field(default=8, metadata={"help": "Rank of the update."})
    alpha: float = field(default=8, metadata={"help": "Scaling numerator: scaling = alpha / r (or / sqrt(r))."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    use_rslora: bool = field(default=False, metadata={"help": "Rank-stabilised scaling alpha / sqrt(r)."})
    init_lora_weights: bool | str = field(
        default=True,
        metadata={"help": "True: Kaiming A, zero B (identity at start); 'gaussian': normal A; False: random B too."},
    )
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Set automatically for GPT-2's Conv1D."})
    bias: str = field(default="none", metadata={"help": "Only 'none' is supported."})
    lora_fa: bool = field(
        default=False,
        metadata={"help": "LoRA-FA: A stays frozen at its initialisation while B trains; saved as plain LoRA."},
    )

    method: ClassVar[str] = "lora"
    peft_type: ClassVar[str | None] = METHODS[method].peft_type
    PEFT_RENAMES: ClassVar[dict[str, str]] = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
    LOCAL_FIELDS: ClassVar[tuple[str, ...]] = ("lora_fa",)

    def __post_init__(self) -> None:
        self._require_positive(r=self.r)
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InvalidAdapterError(f"LoRAConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.bias != "none":
            raise InvalidAdapterError(f"LoRAConfig.bias={self.bias!r} is not supported; use 'none'")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise InvalidAdapterError(
                f"LoRAConfig.init_lora_weights must be True, False or 'gaussian', got {self.init_lora_weights!r}"
            )

    @property
    def scaling(self) -> float:
        return self.alpha / (self.r**0.5 if self.use_rslora else self.r)
