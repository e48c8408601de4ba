"""The IA³ site adapter; ``ia3_l`` has PEFT's name and shape ((out, 1), or (1, in) on FFN inputs)."""

from __future__ import annotations

import torch
from torch import nn

from adapterhub.compose.tuners.site import SiteAdapter


class IA3Layer(SiteAdapter):

    def __init__(self, in_features: int, out_features: int, feedforward: bool, init_ones: bool, fan_in_fan_out: bool):
        super().__init__()
        self.feedforward = feedforward
        self.scales_input = feedforward
        self.fan_in_fan_out = fan_in_fan_out
        shape = (1, in_features) if feedforward else (out_features, 1)
        self.ia3_l = nn.Parameter(torch.ones(shape) if init_ones else torch.randn(shape))

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.feedforward:
            return x * self.ia3_l.flatten().to(x.dtype)
        return x

    def on_output(self, site: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.feedforward:
            return out
        return out * self.ia3_l.flatten().to(out.dtype)

    def merge_into(self, site: nn.Module) -> None:
        vec = self.ia3_l.detach().flatten().to(site.weight.dtype)
        # nn.Linear weight is (out, in); Conv1D stores (in, out)
        if self.feedforward:
            site.weight.data *= vec[:, None] if self.fan_in_fan_out else vec[None, :]
        else:
            site.weight.data *= vec[None, :] if self.fan_in_fan_out else vec[:, None]
            if site.bias is not None:
                site.bias.data *= vec
