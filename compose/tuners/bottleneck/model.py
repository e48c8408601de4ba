"""Where bottleneck adapters go: the arch table's attention (``mh_adapter``) and FFN
(``output_adapter``) output sites, and the taps that hand them their sublayer's residual."""

from __future__ import annotations

from torch import nn

from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.compose.tuners.bottleneck.layer import BottleneckLayer
from adapterhub.compose.tuners.bottleneck.taps import plan_taps


def default_targets(spec) -> str:
    return "|".join(spec.ffn_output_sites)


def fill_defaults(config: BottleneckConfig, spec) -> None:
    if config.target_modules is None and spec is not None:
        sites = (list(spec.attn_output_sites) if config.mh_adapter else []) + (
            list(spec.ffn_output_sites) if config.output_adapter else [])
        config.target_modules = "|".join(f"(?:{s})" for s in sites)


def build_layer(site: nn.Module, name: str, config: BottleneckConfig) -> BottleneckLayer:
    _, out_f = site.in_out_features
    return BottleneckLayer(out_f, config)


def plan_sites(model: nn.Module, site_names: list[str], config: BottleneckConfig):
    return plan_taps(model, site_names, config)


def trainable_parameters(layer: BottleneckLayer, config: BottleneckConfig):
    return list(layer.parameters())
