"""Where bottleneck adapters go: the arch table's attention/FFN output sites, by placement."""

from __future__ import annotations

from torch import nn

from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.compose.tuners.bottleneck.layer import BottleneckLayer


def default_targets(spec) -> str:
    return "|".join(spec.ffn_output_sites)


def fill_defaults(config: BottleneckConfig, spec) -> None:
    if config.target_modules is None and spec is not None:
        sites = list(spec.ffn_output_sites)
        if config.placement == "houlsby":
            sites = list(spec.attn_output_sites) + sites
        config.target_modules = "|".join(f"(?:{s})" for s in sites)


def build_layer(site: nn.Module, name: str, config: BottleneckConfig) -> BottleneckLayer:
    _, out_f = site.in_out_features
    return BottleneckLayer(out_f, config)


def trainable_parameters(layer: BottleneckLayer, config: BottleneckConfig):
    return list(layer.parameters())
