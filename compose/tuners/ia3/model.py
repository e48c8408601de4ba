"""Attaching IA³ to a model's sites."""

from __future__ import annotations

import re

from torch import nn

from adapterhub.compose.tuners.ia3.config import IA3Config
from adapterhub.compose.tuners.ia3.layer import IA3Layer


def default_targets(spec) -> tuple[str, ...]:
    return spec.ia3_targets


def fill_defaults(config: IA3Config, spec) -> None:
    if config.feedforward_modules is None and spec is not None:
        config.feedforward_modules = list(spec.ia3_feedforward)


def _is_feedforward(name: str, patterns: list[str] | str | None) -> bool:
    if not patterns:
        return False
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith("." + p) for p in patterns)


def build_layer(site: nn.Module, name: str, config: IA3Config) -> IA3Layer:
    in_f, out_f = site.in_out_features
    return IA3Layer(
        in_f,
        out_f,
        feedforward=_is_feedforward(name, config.feedforward_modules),
        init_ones=config.init_ia3_weights,
        fan_in_fan_out=site.fan_in_fan_out,
    )


def trainable_parameters(layer: IA3Layer, config: IA3Config):
    return list(layer.parameters())
