"""Route: a mixture of adapter experts with trainable routers (per token, top-k).

A router lives at each site, in each transformer layer or once in the model (``Route(scope=...)``;
``block_layers.share_group`` says which sites hold the same router). A shared router reads the input
of each site it serves (a router is one small matmul, so q, k and v of a layer simply compute the
same gates three times rather than caching them).

The router is a linear map from the site's input hidden state to one logit per expert. The
forward value uses the chosen experts only, with their softmax renormalised over the top k (so
with ``top_k=1`` a token gets exactly its expert's output). Gradients flow as if the gate were the
full softmax (a straight-through estimator): with renormalised top-1 gates the router would
otherwise receive no gradient at all.

The Switch-Transformer load-balancing loss ``n * sum_i f_i * P_i`` (``f_i``: share of tokens whose
first choice is expert ``i``, ``P_i``: mean router probability of ``i``) is collected from every
router during a forward and added to the model's loss, times ``aux_loss_coef``.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from adapterhub.compose.composition.block_layers import layer_at

ATTR = "ah_routers"
PEFT_TYPE = "ADAPTER_ROUTER"


class RouterLayer(nn.Module):
    def __init__(self, in_features: int, out_features: int, children: int):
        super().__init__()
        self.router = nn.Linear(in_features, children, bias=False)
        nn.init.normal_(self.router.weight, std=0.02)

    def gates(self, x: torch.Tensor, top_k: int, noise_std: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gates, probs, first choice): gates and probs are (..., experts), gates zero off the top k."""
        logits = self.router(x.to(self.router.weight.dtype))
        if self.training and noise_std > 0:
            logits = logits + torch.randn_like(logits) * noise_std
        probs = logits.softmax(-1)
        top, idx = logits.topk(top_k, dim=-1)
        sparse = torch.zeros_like(probs).scatter(-1, idx, top.softmax(-1))
        return sparse + (probs - probs.detach()), probs, idx[..., 0].detach()


def new_layer(in_features: int, out_features: int, block, base_config=None) -> RouterLayer:
    return RouterLayer(in_features, out_features, len(block.children))


CHOICES = "_ah_route_choices"  # site attribute: block key -> first-choice expert per token, last forward


def combine(site, block, x: torch.Tensor, out: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    """Executor hook (see ``execute.COMBINERS``): ``out + sum_i g_i (out_i - out)``."""
    key = block.key()
    layer = layer_at(site, ATTR, key)
    if layer is None:
        return out
    kw = block.kwargs
    gates, probs, choice = layer.gates(x, kw["top_k"], kw["noise_std"])
    site.__dict__.setdefault(CHOICES, {})[key] = choice
    result = out
    for i, o in enumerate(outs):
        result = result + gates[..., i : i + 1].to(out.dtype) * (o - out)
    collected = site.ah_state.aux_losses
    if collected is not None and kw["aux_loss_coef"] > 0:
        collected.append(kw["aux_loss_coef"] * load_balancing_loss(probs, choice))
    return result


def last_choices(site, key: str) -> torch.Tensor | None:
    return site.__dict__.get(CHOICES, {}).get(key)


def load_balancing_loss(probs: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    n = probs.shape[-1]
    flat = probs.reshape(-1, n)
    share = torch.bincount(choice.reshape(-1), minlength=n).to(flat.dtype) / max(1, choice.numel())
    return n * (share * flat.mean(0)).sum()


@contextlib.contextmanager
def collect_aux(state):
    """Gather routers' auxiliary losses during one forward; a nested forward yields None (the outer
    one owns the list and attaches the loss once)."""
    if state.aux_losses is not None:
        yield None
        return
    state.aux_losses = []
    try:
        yield state.aux_losses
    finally:
        state.aux_losses = None


def attach_aux(output, losses: list[torch.Tensor] | None):
    """Add the auxiliary loss (mean over routers) to ``output.loss`` (when present) and expose it as ``aux_loss``."""
    if not losses or not hasattr(output, "keys"):
        return output
    aux = torch.stack([loss.to(torch.float32) for loss in losses]).mean()
    output["aux_loss"] = aux
    if output.get("loss") is not None:
        output["loss"] = output["loss"] + aux.to(output["loss"].dtype)
    return output
