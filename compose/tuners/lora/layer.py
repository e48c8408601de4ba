"""The LoRA site adapter: ``lora_A``/``lora_B`` named as PEFT names them, so keys map one to one."""

from __future__ import annotations

import math

import torch
from torch import nn

from adapterhub.compose.tuners.lora.config import LoRAConfig
from adapterhub.compose.tuners.site import SiteAdapter, initialising, linear


class LoRALayer(SiteAdapter):

    def __init__(self, in_features: int, out_features: int, config: LoRAConfig, fan_in_fan_out: bool):
        super().__init__()
        self.r = config.r
        self.scaling = config.scaling
        self.fan_in_fan_out = fan_in_fan_out
        self.lora_A = linear(in_features, config.r, bias=False)
        self.lora_B = linear(config.r, out_features, bias=False)
        self.lora_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        if initialising():
            self.reset(config.init_lora_weights)

    @torch.no_grad()
    def reset(self, init: bool | str) -> None:
        if init is False:
            return
        if init == "gaussian":
            nn.init.normal_(self.lora_A.weight, std=1 / self.r)
        else:
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def on_output(self, site: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        h = self.lora_A(self.lora_dropout(x.to(self.lora_A.weight.dtype)))
        weight = self.lora_B.weight
        if h.dtype != out.dtype:
            return out + (h @ weight.t()).to(out.dtype) * self.scaling
        # one fused pass (out + scaling * h @ B^T) instead of a matmul, a scale and an add over the output
        n = out.shape[-1]
        return torch.addmm(out.reshape(-1, n), h.reshape(-1, h.shape[-1]), weight.t(), alpha=self.scaling).view(out.shape)

    def delta_weight(self, site: nn.Module) -> torch.Tensor:
        """``scaling * B @ A`` in the site's weight layout (transposed for Conv1D)."""
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
        return delta.T if self.fan_in_fan_out else delta

    def merge_into(self, site: nn.Module) -> None:
        site.weight.data += self.delta_weight(site).to(site.weight.dtype)
