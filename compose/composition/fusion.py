"""AdapterFusion (Pfeiffer et al., 2021): per site, attention over the outputs of several adapters.

The query comes from the site's input, keys and values from each adapter's output at the site.
The query starts at zero and the value projection at the identity, so an untrained fusion is
exactly the mean of its adapters' outputs and training moves it from there. The attention
weights of the last forward are kept on each layer (``last_weights``, averaged over tokens) so that
``model.fusion_weights(fuse)`` can draw a per-layer heatmap.

``Fuse(..., style="adapters")`` is AdapterHub ``adapters``' AdapterFusion instead (``BertFusion`` run
by its ``compose_fuse``), over bottleneck adapters, exactly: ``AdaptersFusionLayer`` and
``combine_adapters`` below. The two differ in what they attend with and over:

=================  ======================================  ==============================================
                   default style                           ``adapters`` style
=================  ======================================  ==============================================
query reads        the site's input (e.g. the FFN's        the sublayer's hidden state as the last
                   intermediate activation)                adapter reads it (after residual and LayerNorm)
keys, values       each adapter's whole site output        each adapter's bottleneck output, before its
                                                           own residual (``up * scaling``)
residual           inside every output (so ``v`` maps it)  added once, after the value projection
scores             ``q . k / (sqrt(d) T)``                 ``q . k / T``
initial value      identity                                identity + 1e-6 off the diagonal
=================  ======================================  ==============================================
"""

from __future__ import annotations

import math

import torch
from torch import nn

from adapterhub.compose.composition.block_layers import layer_at
from adapterhub.compose.composition.blocks import Fuse

ATTR = "ah_fusions"
PEFT_TYPE = "ADAPTER_FUSION"


class FusionLayer(nn.Module):
    """``softmax(q(x) . k(o_i) / (sqrt(d) T))``-weighted sum of ``v(o_i)`` over adapter outputs ``o_i``."""

    def __init__(self, in_features: int, out_features: int, children: int):
        super().__init__()
        self.query = nn.Linear(in_features, out_features)
        self.key = nn.Linear(out_features, out_features)
        self.value = nn.Linear(out_features, out_features, bias=False)
        with torch.no_grad():
            nn.init.zeros_(self.query.weight)
            nn.init.zeros_(self.query.bias)
            nn.init.normal_(self.key.weight, std=0.02)
            nn.init.zeros_(self.key.bias)
            self.value.weight.copy_(torch.eye(out_features))
        self.children_count = children
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, outs: list[torch.Tensor], temperature: float) -> torch.Tensor:
        """The formula above, computed without projecting every adapter's output twice.

        ``k(o_i) . q = o_i . (W_k^T q) + b_k . q``: the last term is the same for every ``i`` and
        cancels in the softmax, so one ``W_k^T q`` per token replaces n key projections; and with a
        bias-free value projection ``sum_i p_i v(o_i) = v(sum_i p_i o_i)``, one projection replaces
        n. Out of training, query and key fold into one matrix. A Fuse of two adapters went from
        five d x d products per site to two."""
        dtype = self.query.weight.dtype
        stacked = torch.stack([o.to(dtype) for o in outs], dim=-2)  # (..., n, d)
        if torch.is_grad_enabled():
            qk = self.query(x.to(dtype)) @ self.key.weight  # (..., d): W_k^T q(x)
        else:
            qk = torch.nn.functional.linear(x.to(dtype), *self._folded_query_key())
        scores = (stacked @ qk.unsqueeze(-1)).squeeze(-1) / (math.sqrt(stacked.shape[-1]) * temperature)
        probs = scores.softmax(dim=-1)
        self.last_weights = probs.detach().reshape(-1, probs.shape[-1]).mean(0)
        mixed = (probs.unsqueeze(-2) @ stacked).squeeze(-2)  # (..., d)
        return self.value(mixed).to(outs[0].dtype)

    def _folded_query_key(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` with ``x W^T + b = W_k^T q(x)``, for use without autograd: one product per
        token instead of two. Folded again only when a weight changes."""
        q_w, q_b, k_w = self.query.weight, self.query.bias, self.key.weight
        stamp = tuple((id(t), t._version) for t in (q_w, q_b, k_w))
        folded = self.__dict__.get("_folded")
        if folded is None or folded[0] != stamp:
            folded = (stamp, k_w.t() @ q_w, q_b @ k_w)
            self.__dict__["_folded"] = folded
        return folded[1], folded[2]


class AdaptersFusionLayer(nn.Module):
    """``adapters``' ``BertFusion``: its parameters (``query``, ``key``, ``value``, named as there, so
    ``state_dict`` keys are its keys below the site), its initialisation and its forward, for the
    options of ``blocks.ADAPTERS_FUSION_OPTIONS`` (``temperature`` here is ``Fuse``'s, a constant)."""

    def __init__(self, hidden: int, options: dict, dropout: float):
        super().__init__()
        self.options = dict(options)
        if options["query"]:
            self.query = nn.Linear(hidden, hidden)
        if options["key"]:
            self.key = nn.Linear(hidden, hidden)
        if options["value"]:
            self.value = nn.Linear(hidden, hidden, bias=False)
        with torch.no_grad():
            for lin in (getattr(self, n) for n in ("query", "key", "value") if options[n]):
                lin.weight.normal_(mean=0.0, std=0.02)
                if lin.bias is not None:
                    lin.bias.zero_()
            if options["value"] and options["value_initialized"]:
                self.value.weight.fill_(1e-6).fill_diagonal_(1.0)
        self.dropout = nn.Dropout(dropout)
        self.last_weights: torch.Tensor | None = None

    def forward(self, query: torch.Tensor, ups: list[torch.Tensor], residual: torch.Tensor,
                temperature: float = 1.0) -> torch.Tensor:
        """``softmax(q(query) . k(up_i) / T)``-weighted ``v(up_i)``, plus ``residual`` (before the
        projections instead with ``residual_before``, to keys and values alike, as ``adapters`` does).

        ``v`` has no bias, so ``sum_i p_i v(u_i) = v(sum_i p_i u_i)``: one value projection, whichever
        side of the softmax ``value_before_softmax`` puts it. Without dropout on the scores,
        ``k(u_i) . q = u_i . (W_k^T q) + b_k . q`` and the last term cancels in the softmax: one
        ``W_k^T q`` per token instead of a key projection per adapter."""
        o = self.options
        dtype = next(self.parameters()).dtype if o["query"] or o["key"] or o["value"] else ups[0].dtype
        stacked = torch.stack([u.to(dtype) for u in ups], dim=-2)  # (..., n, d)
        if o["residual_before"]:
            stacked = stacked + residual.to(dtype).unsqueeze(-2)
        q = self.query(query.to(dtype)) if o["query"] else query.to(dtype)
        if not o["key"]:
            scores = (stacked @ q.unsqueeze(-1)).squeeze(-1)
        elif self.training and self.dropout.p > 0:
            scores = (self.key(stacked) @ q.unsqueeze(-1)).squeeze(-1)
        else:
            scores = (stacked @ (q @ self.key.weight).unsqueeze(-1)).squeeze(-1)
        probs = (self.dropout(scores) / temperature).softmax(dim=-1)
        self.last_weights = probs.detach().reshape(-1, probs.shape[-1]).mean(0)
        mixed = (probs.unsqueeze(-2) @ stacked).squeeze(-2)  # (..., d)
        out = self.value(mixed) if o["value"] else mixed
        if not o["residual_before"]:
            out = out + residual.to(dtype)
        return out.to(residual.dtype)


def new_layer(in_features: int, out_features: int, block, base_config=None) -> nn.Module:
    if block.kwargs.get("style") == "adapters":
        options = block.kwargs["options"]
        dropout = options["dropout_prob"]
        if dropout is None:  # adapters: the model's attention dropout (BERT's 0.1; 0 where there is none)
            dropout = float(getattr(base_config, "attention_probs_dropout_prob", 0.0) or 0.0)
        return AdaptersFusionLayer(out_features, options, dropout)
    return FusionLayer(in_features, out_features, len(block.children))


def combine(site, block, x: torch.Tensor, out: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    """Executor hook (see ``execute.COMBINERS``)."""
    layer = layer_at(site, ATTR, block.key())
    if layer is None:  # set_active checks the layers exist, so this is a site none of them covers
        return out
    return layer(x, outs, block.kwargs["temperature"])


def is_adapters_style(block) -> bool:
    return isinstance(block, Fuse) and block.style == "adapters"


def combine_adapters(site, block: Fuse, out: torch.Tensor) -> torch.Tensor:
    """An ``adapters``-style Fuse at one bottleneck site, given the running output ``out`` of the
    sublayer's projection: ``adapters``' ``compose_fuse`` and the last adapter's ``post_forward``,
    as far as the site goes (the sublayer's own residual add and LayerNorm follow, as for a single
    bottleneck adapter: ``bottleneck.layer``).

    The last child's ``pre_forward`` gives the hidden state every child reads, the query and the
    residual; each child's bottleneck output (``up``, before its residual and ``ln_after``) is a key
    and a value."""
    layer = layer_at(site, ATTR, block.key())
    if layer is None:
        return out
    adapters = [site.ah_adapters[n] for n in block.children if n in site.ah_adapters]
    c = adapters[-1].config
    tap = site.__dict__.get("ah_sublayer")
    input_tensor = tap.value if tap is not None else None
    layer_norm = tap.layer_norm if tap is not None else None
    hidden, residual = adapters[-1].pre_forward(out, input_tensor, layer_norm)
    # the query: the hidden state, or (query_before_ln) the raw output; a parallel adapter's is its input
    query = out if layer.options["query_before_ln"] and not c.is_parallel else hidden
    fused = layer(query, [_up(a, hidden) for a in adapters], residual, block.kwargs["temperature"])
    if c.is_parallel:  # ParallelAdapter.post_forward adds the sublayer's output back
        fused = fused + out
    if c.needs_residual and not c.original_ln_after:  # pre-LN: the block adds the residual; undo it
        fused = fused - input_tensor
    return fused


def _up(adapter, hidden: torch.Tensor) -> torch.Tensor:
    """``adapters``' ``up``: the bottleneck's output times its scaling, before dropout, ``ln_after``
    and the residual."""
    x = hidden.to(adapter.adapter_down.weight.dtype)
    if adapter.config.ln_before:
        x = adapter.adapter_norm_before(x)
    return adapter.adapter_up(adapter.act(adapter.adapter_down(x))) * adapter.config.scaling
