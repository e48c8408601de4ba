"""The bottleneck site adapter: ``adapters``' ``Adapter``/``ParallelAdapter`` forward, at the output
projection of a sublayer.

``adapters`` rewrites each sublayer to hand its adapters three things: the projection's output, the
residual input and the LayerNorm. Here the site has the first; `taps.SublayerTap` captures the
residual as the model runs and knows the LayerNorm. What the sublayer does after the projection
(``LN(out + residual)`` post-LN, ``out + residual`` pre-LN) stays the model's own, so the site
returns what makes that equal ``adapters``' ``post_forward``. Dropout is the model's own too: in
training it falls after the adapter here, where ``adapters`` puts it before; evaluation is equal.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.compose.tuners.site import SiteAdapter, initialising, linear

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "silu": nn.SiLU, "tanh": nn.Tanh,
               "leakyrelu": nn.LeakyReLU}


class BottleneckLayer(SiteAdapter):
    def __init__(self, hidden: int, config: BottleneckConfig):
        super().__init__()
        width = max(1, int(hidden // config.reduction_factor))
        self.config = config
        if config.ln_before:
            self.adapter_norm_before = nn.LayerNorm(hidden)
        self.adapter_down = linear(hidden, width)
        self.act = ACTIVATIONS[config.non_linearity.lower()]()
        self.adapter_up = linear(width, hidden)
        if config.ln_after:
            self.adapter_norm_after = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(config.dropout)
        if initialising():
            init_weights(self, config.init_weights)

    def bottleneck(self, h: torch.Tensor) -> torch.Tensor:
        """``adapter_up(act(adapter_down(h))) * scaling``, through the optional input LayerNorm."""
        x = h.to(self.adapter_down.weight.dtype)
        if self.config.ln_before:
            x = self.adapter_norm_before(x)
        return self.dropout(self.adapter_up(self.act(self.adapter_down(x))) * self.config.scaling).to(h.dtype)

    def adapter_output(self, h: torch.Tensor, residual_input: torch.Tensor | None,
                       layer_norm: nn.Module | None) -> torch.Tensor:
        """``adapters``' ``pre_forward`` and ``forward``: what its ``post_forward`` receives."""
        c = self.config
        if c.is_parallel:
            out = self.bottleneck(residual_input)
            return (self.adapter_norm_after(out) if c.ln_after else out) + h
        h, residual = self.pre_forward(h, residual_input, layer_norm)
        out = self.bottleneck(h)
        if c.adapter_residual_before_ln:
            out = out + residual
        if c.ln_after:
            out = self.adapter_norm_after(out)
        if not c.adapter_residual_before_ln:
            out = out + residual
        return out

    def pre_forward(self, h: torch.Tensor, residual_input: torch.Tensor | None,
                    layer_norm: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``adapters``' ``pre_forward``: the hidden state the adapter reads and its residual (a
        parallel adapter reads the sublayer's input for both)."""
        c = self.config
        if c.is_parallel:
            return residual_input, residual_input
        residual = h
        if c.original_ln_before:
            h = h + residual_input
            if c.residual_before_ln == "post_add":
                residual = h
            if layer_norm is not None:
                h = layer_norm(h)
        if c.residual_before_ln is False:
            residual = h
        return h, residual

    def on_output(self, site: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        tap = site.__dict__.get("ah_sublayer")
        if not self.config.needs_residual:
            return self.adapter_output(out, None, None)
        residual = tap.value
        result = self.adapter_output(out, residual, tap.layer_norm)
        if not self.config.original_ln_after:  # pre-LN only (the tap refuses it post-LN): undo the block's add
            return result - residual
        return result


def init_weights(layer: BottleneckLayer, scheme: str) -> None:
    """``adapters``' three schemes, and ``linear`` (``nn.Linear``'s own: random, never an identity)."""
    down, up = layer.adapter_down, layer.adapter_up
    with torch.no_grad():
        if scheme == "bert":
            for lin in (down, up):
                lin.weight.normal_(mean=0.0, std=0.02)
                lin.bias.zero_()
        elif scheme == "mam_adapter":
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
            down.bias.zero_()
            up.weight.zero_()
            up.bias.zero_()
        elif scheme == "houlsby":
            for lin in (down, up):
                nn.init.trunc_normal_(lin.weight, mean=0, std=1e-2, a=-2e-2, b=2e-2)
                lin.bias.zero_()
