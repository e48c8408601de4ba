"""Bottleneck adapters: Houlsby (Houlsby et al., 2019) and Pfeiffer (Pfeiffer et al., 2021) placements.

PEFT has no such method, so ``adapter_config.json`` uses our schema (``peft_type: "BOTTLENECK"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.errors import InvalidAdapterError
from adapterhub.vocab import METHODS

PLACEMENTS = ("houlsby", "pfeiffer")
NON_LINEARITIES = ("relu", "gelu", "swish", "tanh")


@dataclass
class BottleneckConfig(AdapterConfig):
    """``h + up(act(down(h)))`` after the attention output (Houlsby) and after the FFN (both).

    >>> BottleneckConfig(placement="pfeiffer", reduction_factor=16).method
    'bottleneck'
    """

    placement: str = field(default="pfeiffer", metadata={"help": "'houlsby' (attention + FFN) or 'pfeiffer' (FFN)."})
    reduction_factor: int = field(default=16, metadata={"help": "Bottleneck width = hidden size / reduction_factor."})
    non_linearity: str = field(default="relu", metadata={"help": "relu, gelu, swish or tanh."})
    residual: bool = field(default=True, metadata={"help": "Add the adapter's input back to its output."})
    init_weights: bool = field(default=True, metadata={"help": "Zero-init the up projection (identity at start)."})

    method: ClassVar[str] = "bottleneck"
    peft_type: ClassVar[str | None] = METHODS[method].peft_type

    def __post_init__(self) -> None:
        self._require_positive(reduction_factor=self.reduction_factor)
        if self.placement not in PLACEMENTS:
            raise InvalidAdapterError(f"BottleneckConfig.placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.non_linearity not in NON_LINEARITIES:
            raise InvalidAdapterError(
                f"BottleneckConfig.non_linearity must be one of {NON_LINEARITIES}, got {self.non_linearity!r}"
            )
