"""Running a composition at one adapter site: the dispatch table behind Stack, Average, Fuse and Route.

A site's output for a composition is computed in the "on output" style every method already
uses: the base output first, then each item of the top-level chain transforms it. Blocks that
combine several children (Average, Fuse, Route) run every child on the same running output and
hand the children's outputs to a combiner looked up in ``COMBINERS``, so adding a block is one
row there, not another ``if`` in every layer. (An ``adapters``-style Fuse is the one exception: it
attends over what its bottleneck adapters compute inside, so it runs them itself.)

Plain chains of adapters never come here: sites run them on their own fast path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adapterhub.compose.composition import fusion, routing
from adapterhub.compose.composition.blocks import Average, Block, Fuse, Route, Stack, chain_of
from adapterhub.compose.tuners.site import SiteAdapter

Node = str | Block


def adapter_at(site, name: str) -> SiteAdapter | None:
    """The adapter ``name`` at this site, unless it is absent or merged into the base weight."""
    adapter = site.ah_adapters[name] if name in site.ah_adapters else None
    if adapter is None or name in site.ah_merged:
        return None
    return adapter


def scales_input(site, node: Node | None) -> bool:
    """Whether some adapter of ``node``'s top-level chain scales the site input (IA³ on FFN inputs)."""
    for item in chain_of(node):
        if isinstance(item, str):
            adapter = adapter_at(site, item)
            if adapter is not None and adapter.scales_input:
                return True
    return False


def site_output(site, node: Node | None, x: torch.Tensor, base_out: torch.Tensor | None = None) -> torch.Tensor:
    """The site's full output for ``node``; reuses ``base_out`` when no input scaling is involved."""
    chain = chain_of(node)
    if base_out is None or scales_input(site, node):
        h = x
        for item in chain:
            adapter = adapter_at(site, item) if isinstance(item, str) else None
            if adapter is not None:
                h = adapter.scale_input(h)
        base_out = site.base_forward(h)
    out = base_out
    for item in chain:
        out = apply_node(site, item, x, out)
    return out


def apply_node(site, node: Node, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Transform the running output ``out`` by ``node`` (``x`` is the site input)."""
    if isinstance(node, str):
        adapter = adapter_at(site, node)
        return out if adapter is None else adapter.on_output(site, x, out)
    if isinstance(node, Stack):
        for child in node.children:
            out = apply_node(site, child, x, out)
        return out
    if not any(adapter_at(site, leaf) is not None for leaf in node.leaves()):
        return out  # none of the block's adapters lives here
    if fusion.is_adapters_style(node):  # attends over the bottlenecks' inner outputs, not the children's outputs
        return fusion.combine_adapters(site, node, out)
    outs = [apply_node(site, child, x, out) for child in node.children]
    return COMBINERS[type(node)](site, node, x, out, outs)


def _average(site, node: Average, x: torch.Tensor, out: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    result = out
    for w, o in zip(node.weights, outs, strict=True):
        result = result + w * (o - out)
    return result


COMBINERS: dict[type[Block], Callable[..., torch.Tensor]] = {
    Average: _average,
    Fuse: fusion.combine,
    Route: routing.combine,
}


class BlockPlan:
    """Installed as ``AdapterState.block_plan`` while a composition with Fuse/Average/Route is active."""

    def __init__(self, node: Node):
        self.node = node

    def apply(self, site, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return site_output(site, self.node, x)
