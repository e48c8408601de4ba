"""IA³ (Liu et al., 2022): learned scaling vectors on keys, values and the FFN activation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.vocab import METHODS


@dataclass
class IA3Config(AdapterConfig):
    """``target_modules`` get an output scaling; those also in ``feedforward_modules`` scale their input.

    >>> IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]).method
    'ia3'
    """

    feedforward_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Targets whose *input* (the FFN activation) is scaled."}
    )
    init_ia3_weights: bool = field(default=True, metadata={"help": "Ones-init so the untrained adapter is identity."})
    fan_in_fan_out: bool = field(default=False, metadata={"help": "Set automatically for GPT-2's Conv1D."})

    method: ClassVar[str] = "ia3"
    peft_type: ClassVar[str | None] = METHODS[method].peft_type
