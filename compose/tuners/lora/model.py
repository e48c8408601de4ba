"""Attaching LoRA to a model's sites."""

from __future__ import annotations

from torch import nn

from adapterhub.compose.tuners.lora.config import LoRAConfig
from adapterhub.compose.tuners.lora.layer import LoRALayer


def default_targets(spec) -> tuple[str, ...]:
    return spec.lora_targets


def build_layer(site: nn.Module, name: str, config: LoRAConfig) -> LoRALayer:
    in_f, out_f = site.in_out_features
    return LoRALayer(in_f, out_f, config, fan_in_fan_out=site.fan_in_fan_out)


def trainable_parameters(layer: LoRALayer, config: LoRAConfig):
    """LoRA-FA keeps A frozen at its initial value: only B trains (half the optimizer state)."""
    if config.lora_fa:
        return list(layer.lora_B.parameters())
    return list(layer.parameters())
