"""Bottleneck adapters as AdapterHub's ``adapters`` defines them (its ``BnConfig``): the same options
with the same names and meanings, so that a folder maps onto ``adapters`` and back and a name such as
"Pfeiffer" means the same network in both libraries.

The placements are the presets: ``seq_bn`` (Pfeiffer et al., 2021: after the FFN, reading the
sublayer's output after the residual and LayerNorm), ``double_seq_bn`` (Houlsby et al., 2019: after the
attention and after the FFN, on the raw sublayer output) and ``par_bn`` (He et al., 2022: beside the
FFN, reading its input). PEFT has no such method, so ``adapter_config.json`` uses our schema
(``peft_type: "BOTTLENECK"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.errors import InvalidAdapterError
from adapterhub.vocab import METHODS

NON_LINEARITIES = ("relu", "gelu", "swish", "silu", "tanh", "leakyrelu")
INIT_WEIGHTS = ("bert", "mam_adapter", "houlsby", "linear")
RESIDUAL_BEFORE_LN = (True, False, "post_add")

# ``adapters``' own presets (``SeqBnConfig``, ``DoubleSeqBnConfig``, ``ParBnConfig``), by their names and
# the older names ``adapters`` still accepts; each sets exactly what the ``adapters`` class sets.
PRESETS: dict[str, dict[str, Any]] = {
    "seq_bn": {"mh_adapter": False, "output_adapter": True, "original_ln_before": True, "original_ln_after": True,
               "residual_before_ln": True, "non_linearity": "relu", "reduction_factor": 16},
    "double_seq_bn": {"mh_adapter": True, "output_adapter": True, "original_ln_before": False,
                      "original_ln_after": True, "residual_before_ln": True, "non_linearity": "swish",
                      "reduction_factor": 16},
    "par_bn": {"mh_adapter": False, "output_adapter": True, "original_ln_before": False, "original_ln_after": True,
               "residual_before_ln": True, "non_linearity": "relu", "reduction_factor": 2, "is_parallel": True,
               "scaling": 4.0, "init_weights": "mam_adapter"},
}
PRESET_ALIASES = {"pfeiffer": "seq_bn", "houlsby": "double_seq_bn", "parallel": "par_bn"}


@dataclass
class BottleneckConfig(AdapterConfig):
    """``adapters``' ``BnConfig``; the defaults are its ``SeqBnConfig`` (Pfeiffer).

    >>> BottleneckConfig.preset("houlsby").mh_adapter, BottleneckConfig().original_ln_before
    (True, True)
    """

    mh_adapter: bool = field(default=False, metadata={"help": "An adapter after the attention sublayer."})
    output_adapter: bool = field(default=True, metadata={"help": "An adapter after the feed-forward sublayer."})
    reduction_factor: int = field(default=16, metadata={"help": "Bottleneck width = hidden size / reduction_factor."})
    non_linearity: str = field(default="relu", metadata={"help": "relu, gelu, swish, tanh or leakyrelu."})
    original_ln_before: bool = field(
        default=True, metadata={"help": "Add the sublayer's residual (and apply its LayerNorm) before the adapter."})
    original_ln_after: bool = field(
        default=True, metadata={"help": "Add the residual (and apply the LayerNorm) after the adapter."})
    residual_before_ln: bool | str = field(
        default=True, metadata={"help": "The adapter's residual is taken before the LayerNorm (True), after it "
                                        "(False), or after the residual add ('post_add')."})
    adapter_residual_before_ln: bool = field(
        default=False, metadata={"help": "Add the adapter's residual before its own ln_after."})
    ln_before: bool = field(default=False, metadata={"help": "A new LayerNorm on the adapter's input."})
    ln_after: bool = field(default=False, metadata={"help": "A new LayerNorm on the adapter's output."})
    is_parallel: bool = field(default=False, metadata={"help": "Beside the sublayer, reading its input (He et al.)."})
    scaling: float = field(default=1.0, metadata={"help": "Multiplies the up projection's output."})
    init_weights: str = field(
        default="bert", metadata={"help": "bert (normal 0.02), mam_adapter (zero up: identity at start), houlsby, "
                                          "or linear (torch's default)."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's output while training."})

    method: ClassVar[str] = "bottleneck"
    peft_type: ClassVar[str | None] = METHODS[method].peft_type

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> BottleneckConfig:
        """``seq_bn``/``pfeiffer``, ``double_seq_bn``/``houlsby`` or ``par_bn``/``parallel``, as ``adapters``
        defines them, with ``overrides`` on top."""
        key = PRESET_ALIASES.get(name, name)
        if key not in PRESETS:
            raise InvalidAdapterError(
                f"unknown bottleneck preset {name!r}; one of {', '.join(sorted([*PRESETS, *PRESET_ALIASES]))}")
        return cls(**{**PRESETS[key], **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any], local: dict[str, Any] | None = None) -> AdapterConfig:
        return super().from_dict(legacy_options(data), local)

    def __post_init__(self) -> None:
        self._require_positive(reduction_factor=self.reduction_factor)
        if isinstance(self.init_weights, bool):  # before the options were AdapterHub's: True zero-initialised up
            self.init_weights = "mam_adapter" if self.init_weights else "linear"
        if not isinstance(self.non_linearity, str) or self.non_linearity.lower() not in NON_LINEARITIES:
            raise InvalidAdapterError(
                f"BottleneckConfig.non_linearity must be one of {NON_LINEARITIES}, got {self.non_linearity!r}")
        if self.init_weights not in INIT_WEIGHTS:
            raise InvalidAdapterError(f"BottleneckConfig.init_weights must be one of {INIT_WEIGHTS}, "
                                      f"got {self.init_weights!r}")
        if self.residual_before_ln not in RESIDUAL_BEFORE_LN or type(self.residual_before_ln) is int:
            raise InvalidAdapterError(f"BottleneckConfig.residual_before_ln must be True, False or 'post_add', "
                                      f"got {self.residual_before_ln!r}")
        if isinstance(self.scaling, bool) or not isinstance(self.scaling, int | float):
            raise InvalidAdapterError(f"BottleneckConfig.scaling must be a number, got {self.scaling!r} "
                                      "(adapters' 'learned' and 'channel' scalings are not supported)")
        self.scaling = float(self.scaling)
        if not self.mh_adapter and not self.output_adapter:
            raise InvalidAdapterError("BottleneckConfig: mh_adapter and output_adapter are both False: "
                                      "the adapter would sit nowhere")

    @property
    def needs_residual(self) -> bool:
        """Whether the adapter reads the sublayer's residual input (captured from the model as it runs)."""
        return self.original_ln_before or self.is_parallel or not self.original_ln_after


def legacy_options(data: dict[str, Any]) -> dict[str, Any]:
    """An ``adapter_config.json`` written before the options were AdapterHub's, in those options.

    Then ``placement: "pfeiffer"`` put the adapter on the raw FFN output, before the residual and
    LayerNorm: ``adapters`` calls that ``BnConfig(original_ln_before=False)``, not Pfeiffer, and
    "houlsby" was the same on both sublayers. Such a folder keeps its exact network.
    """
    if "placement" not in data:
        return data
    out = {k: v for k, v in data.items() if k not in ("placement", "residual")}
    if data.get("residual", True) is not True:
        raise InvalidAdapterError("adapter_config.json: a bottleneck adapter without its residual "
                                  "(residual: false) has no AdapterHub equivalent and is no longer supported")
    if data["placement"] not in ("pfeiffer", "houlsby"):
        raise InvalidAdapterError(f"adapter_config.json: unknown bottleneck placement {data['placement']!r}")
    out.update(mh_adapter=data["placement"] == "houlsby", output_adapter=True, original_ln_before=False,
               original_ln_after=True, residual_before_ln=True)
    out.setdefault("init_weights", "mam_adapter")
    return out
