"""The method implementations: one row per adapter method, joining its name and kind
(``adapterhub.vocab``) to its config class and its ``model.py`` (see ``contract.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from adapterhub.compose.tuners.bottleneck import model as bottleneck_model
from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.compose.tuners.config_base import AdapterConfig
from adapterhub.compose.tuners.ia3 import model as ia3_model
from adapterhub.compose.tuners.ia3.config import IA3Config
from adapterhub.compose.tuners.lora import model as lora_model
from adapterhub.compose.tuners.lora.config import LoRAConfig
from adapterhub.compose.tuners.prefix import model as prefix_model
from adapterhub.compose.tuners.prefix.config import PrefixTuningConfig
from adapterhub.compose.tuners.prompt import model as prompt_model
from adapterhub.compose.tuners.prompt.config import PromptTuningConfig
from adapterhub.errors import InvalidAdapterError
from adapterhub.vocab import METHODS, MethodInfo


@dataclass(frozen=True)
class Tuner:
    """One method's implementation; ``tuner`` meets ``contract.SiteTuner`` or ``VirtualTokenTuner``."""

    info: MethodInfo
    config_cls: type[AdapterConfig]
    tuner: ModuleType
    param_suffixes: tuple[str, ...] = ()  # per-site tensor names in the saved file

    @property
    def name(self) -> str:
        return self.info.name


TUNERS: dict[str, Tuner] = {
    t.name: t
    for t in (
        Tuner(METHODS["lora"], LoRAConfig, lora_model, ("lora_A.weight", "lora_B.weight")),
        Tuner(METHODS["ia3"], IA3Config, ia3_model, ("ia3_l",)),
        Tuner(METHODS["bottleneck"], BottleneckConfig, bottleneck_model,
              ("adapter_down.weight", "adapter_down.bias", "adapter_up.weight", "adapter_up.bias",
               "adapter_norm_before.weight", "adapter_norm_before.bias", "adapter_norm_after.weight",
               "adapter_norm_after.bias")),
        Tuner(METHODS["prompt_tuning"], PromptTuningConfig, prompt_model),
        Tuner(METHODS["prefix_tuning"], PrefixTuningConfig, prefix_model),
    )
}

PEFT_TYPES = {t.info.folder_peft_type: t for t in TUNERS.values()}


def tuner_for_config(config: AdapterConfig) -> Tuner:
    for tuner in TUNERS.values():
        if type(config) is tuner.config_cls:
            return tuner
    raise InvalidAdapterError(f"unknown adapter config type {type(config).__name__}")


def tuner_for_peft_type(peft_type: str | None) -> Tuner:
    tuner = PEFT_TYPES.get(str(peft_type).upper()) if peft_type else None
    if tuner is None:
        raise InvalidAdapterError(
            f"unknown peft_type {peft_type!r} in adapter_config.json; supported: {', '.join(sorted(PEFT_TYPES))}"
        )
    return tuner
