"""The bottleneck site adapter, placed on the output projection of a sublayer."""

from __future__ import annotations

import torch
from torch import nn

from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.compose.tuners.site import SiteAdapter, initialising, linear

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "tanh": nn.Tanh}


class BottleneckLayer(SiteAdapter):
    def __init__(self, hidden: int, config: BottleneckConfig):
        super().__init__()
        width = max(1, hidden // config.reduction_factor)
        self.residual = config.residual
        self.adapter_down = linear(hidden, width)
        self.act = ACTIVATIONS[config.non_linearity]()
        self.adapter_up = linear(width, hidden)
        if config.init_weights and initialising():
            nn.init.normal_(self.adapter_down.weight, std=1e-2)
            nn.init.zeros_(self.adapter_down.bias)
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)

    def transform(self, h: torch.Tensor) -> torch.Tensor:
        out = self.adapter_up(self.act(self.adapter_down(h.to(self.adapter_down.weight.dtype)))).to(h.dtype)
        return h + out if self.residual else out

    def on_output(self, site: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.transform(out)
