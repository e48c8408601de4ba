"""The method registry: one row per adapter method, read by the model and the folder loader."""

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
from adapterhub.compose.tuners.prefix.config import PrefixTuningConfig
from adapterhub.compose.tuners.prompt.config import PromptTuningConfig
from adapterhub.errors import InvalidAdapterError


@dataclass(frozen=True)
class Method:
    name: str
    config_cls: type[AdapterConfig]
    kind: str  # "site": attaches to Linear/Conv1D modules; "prompt": virtual tokens / KV prefixes
    site_module: ModuleType | None = None
    param_suffixes: tuple[str, ...] = ()  # per-site tensor names in the saved file


METHODS: dict[str, Method] = {
    "lora": Method("lora", LoRAConfig, "site", lora_model, ("lora_A.weight", "lora_B.weight")),
    "ia3": Method("ia3", IA3Config, "site", ia3_model, ("ia3_l",)),
    "bottleneck": Method(
        "bottleneck",
        BottleneckConfig,
        "site",
        bottleneck_model,
        ("adapter_down.weight", "adapter_down.bias", "adapter_up.weight", "adapter_up.bias"),
    ),
    "prompt_tuning": Method("prompt_tuning", PromptTuningConfig, "prompt"),
    "prefix_tuning": Method("prefix_tuning", PrefixTuningConfig, "prompt"),
}

PEFT_TYPES = {m.config_cls.peft_type or m.name.upper(): m for m in METHODS.values()}


def method_for_config(config: AdapterConfig) -> Method:
    for method in METHODS.values():
        if type(config) is method.config_cls:
            return method
    raise InvalidAdapterError(f"unknown adapter config type {type(config).__name__}")


def method_for_peft_type(peft_type: str | None) -> Method:
    method = PEFT_TYPES.get(str(peft_type).upper()) if peft_type else None
    if method is None:
        raise InvalidAdapterError(
            f"unknown peft_type {peft_type!r} in adapter_config.json; supported: {', '.join(sorted(PEFT_TYPES))}"
        )
    return method
