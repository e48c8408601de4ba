"""The composition half of the ``AdapterModel`` API: named compositions, fusion, routing, merges, recipes.

Kept apart from ``model.py`` (which attaches, activates, saves and runs adapters) so that each file
has one job; ``AdapterModel`` inherits this mixin. Method names follow AdapterHub ``adapters``
(``add_adapter_fusion`` there is ``add_fusion`` here) and PEFT (``add_weighted_adapter`` is
``merge_adapters``).

>>> import adapterhub as ah
>>> from transformers import LlamaConfig, LlamaForCausalLM
>>> am = ah.AdapterModel(LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64,
...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=128)))
>>> am.add_adapter("a", ah.LoRAConfig(r=4)); am.add_adapter("b", ah.LoRAConfig(r=2))
>>> am.add_fusion(ah.Fuse("a", "b")); am.set_active(ah.Fuse("a", "b"))
>>> am.add_composition("avg", ah.Average("a", "b", weights=[0.7, 0.3])); am.set_active("avg")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adapterhub import format as fmt
from adapterhub.compose.composition import block_layers, fusion, routing
from adapterhub.compose.composition import blocks as composition
from adapterhub.compose.composition.blocks import Block, Fuse, Route
from adapterhub.compose.core.state import ModelAdapters
from adapterhub.compose.tuners.site import iter_sites
from adapterhub.errors import CompositionError, InvalidAdapterError

if TYPE_CHECKING:
    from adapterhub.compose.tuners.lora.config import LoRAConfig


class CompositionMixin:
    """Mixed into ``AdapterModel``; see the module docstring."""

    ah: ModelAdapters

    # ------------------------------------------------------------------ named compositions
    @property
    def compositions(self) -> dict[str, Block | str]:
        return dict(self.ah.compositions)

    def add_composition(self, name: str, block: Block | str) -> None:
        """Register ``block`` under ``name``: usable in ``set_active(name)`` and ``adapter_names=[name]``."""
        if not isinstance(name, str) or not name or "." in name:
            raise CompositionError(f"composition name {name!r} must be a non-empty string without '.'")
        if name in self.ah.configs:
            raise CompositionError(f"{name!r} is already an adapter's name; pick another composition name")
        block = composition.normalize(block)
        self._check_composition(block)
        self.ah.compositions[name] = block

    def _check_composition(self, active: Block | str | None) -> None:
        """Every leaf loaded, every nesting allowed, every Fuse/Route with its layers."""
        for leaf in composition.leaves_of(active):
            self._require(leaf)
        composition.validate(active, lambda n: self.ah.configs[n].method)
        for block in composition.blocks_in(active, Fuse):
            block_layers.require_layers(self, block, fusion.ATTR, "add_fusion")
        for block in composition.blocks_in(active, Route):
            block_layers.require_layers(self, block, routing.ATTR, "add_router")

    def _block_arg(self, block, kind: type[Block], method: str) -> Block:
        if not isinstance(block, kind):
            raise CompositionError(f"{method}() expects a {kind.__name__} block, got {block!r}")
        for leaf in block.leaves():
            self._require(leaf)
        composition.validate(block, lambda n: self.ah.configs[n].method)
        return block

    # ------------------------------------------------------------------ fusion
    def add_fusion(self, fuse: Fuse) -> None:
        """Create the fusion layers of ``fuse`` at every site carrying one of its adapters."""
        block_layers.ensure_layers(self, self._block_arg(fuse, Fuse, "add_fusion"), fusion.ATTR, fusion.new_layer)

    def train_fusion(self, fuse: Fuse, active: Block | None = None) -> None:
        """Train only the fusion layers (adapters frozen); activates ``active`` (default: ``fuse``)."""
        self._block_arg(fuse, Fuse, "train_fusion")
        block_layers.require_layers(self, fuse, fusion.ATTR, "add_fusion")
        block_layers.train_layers(self, fuse, fusion.ATTR)
        if active is not None:
            self.set_active(active)

    def save_fusion(self, fuse: Fuse, path: str | Path, format: str = "adapterhub",
                    base_model_id: str | None = None) -> Path:
        """Write ``fuse``'s layers as a folder: ours, or (``format="adapters"``, a ``Fuse(style="adapters")``)
        the ``adapter_fusion_config.json`` + ``model_adapter_fusion.safetensors`` that ``adapters`` loads."""
        fuse = self._block_arg(fuse, Fuse, "save_fusion")
        if format == "adapters":
            from adapterhub.compose.folder import adapters_fusion, save

            return adapters_fusion.save_adapters_fusion(self, fuse, Path(path),
                                                        save.recorded_base_id(self, None, base_model_id))
        if format != "adapterhub":
            raise InvalidAdapterError(f"unknown fusion folder format {format!r}; use 'adapterhub' or 'adapters'")
        return block_layers.save_layers(self, fuse, fusion.ATTR, fusion.PEFT_TYPE, Path(path))

    def load_fusion(self, path: str | Path) -> Fuse:
        """Load a fusion folder (ours, or ``adapters``' ``adapter_fusion_config.json`` one) onto the
        adapters it names (they must be loaded); return its block."""
        from adapterhub.compose.folder import adapters_fusion

        if adapters_fusion.is_adapters_fusion(Path(path)):
            return adapters_fusion.load_adapters_fusion(self, Path(path))
        return block_layers.load_layers(self, Path(path), fusion.ATTR, fusion.PEFT_TYPE, fusion.new_layer)

    def fusion_weights(self, fuse: Fuse) -> dict[str, torch.Tensor]:
        """Site path -> mean attention over ``fuse``'s children in the last forward (for a heatmap)."""
        layers = block_layers.layers_of(self, fusion.ATTR, self._block_arg(fuse, Fuse, "fusion_weights").key())
        return {p: layer.last_weights for p, layer in layers.items() if layer.last_weights is not None}

    # ------------------------------------------------------------------ routing
    def add_router(self, route: Route) -> None:
        """Create the routers of ``route`` at every site carrying one of its experts."""
        block_layers.ensure_layers(self, self._block_arg(route, Route, "add_router"), routing.ATTR, routing.new_layer)

    def train_router(self, route: Route) -> None:
        """Train only the routers (experts frozen); activates ``route``; train mode."""
        self._block_arg(route, Route, "train_router")
        block_layers.require_layers(self, route, routing.ATTR, "add_router")
        block_layers.train_layers(self, route, routing.ATTR)

    def save_router(self, route: Route, path: str | Path) -> Path:
        return block_layers.save_layers(self, self._block_arg(route, Route, "save_router"), routing.ATTR,
                                        routing.PEFT_TYPE, Path(path))

    def load_router(self, path: str | Path) -> Route:
        return block_layers.load_layers(self, Path(path), routing.ATTR, routing.PEFT_TYPE, routing.new_layer)

    def router_choices(self, route: Route) -> dict[str, torch.Tensor]:
        """Site path -> first-choice expert index per token in the last forward."""
        key = self._block_arg(route, Route, "router_choices").key()
        sites = dict(iter_sites(self))
        choices = {p: routing.last_choices(sites[p], key) for p in block_layers.layers_of(self, routing.ATTR, key)}
        return {p: c for p, c in choices.items() if c is not None}

    # ------------------------------------------------------------------ weight-space merges
    def merge_adapters(
        self,
        names: list[str],
        weights: list[float] | None = None,
        method: str = "linear",
        *,
        density: float | None = None,
        svd_rank: int | None = None,
        new_name: str = "merged",
        majority_sign_method: str = "total",
    ) -> LoRAConfig:
        """Merge LoRA adapters into a new LoRA adapter ``new_name`` (see ``merging``); return its config."""
        from adapterhub.compose.composition import merging

        return merging.merge_adapters(self, list(names), weights, method, density=density, svd_rank=svd_rank,
                                      new_name=new_name, majority_sign_method=majority_sign_method)

    # ------------------------------------------------------------------ recipes
    def save_composition(self, path: str | Path, active: Block | str | None = None, name: str | None = None,
                         format: str = "adapterhub", base_model_id: str | None = None) -> Path:
        """Write a recipe folder: ``composition.json`` beside the adapters (and fusion/router layers) it
        names; ``format="adapters"``: what ``adapters``' ``save_adapter_setup`` writes."""
        from adapterhub.compose.composition import recipes

        if active is None:
            active, name = self.ah.active, name or self.ah.active_name
        active = composition.normalize(active)
        if active is None:
            raise InvalidAdapterError("nothing to save: pass a composition or activate one first")
        if isinstance(active, str) and active in self.ah.compositions:
            name, active = name or active, self.ah.compositions[active]
        if format == "adapters":
            from adapterhub.compose.folder import adapters_setup, save

            return adapters_setup.save_adapters_setup(self, active, Path(path),
                                                      save.recorded_base_id(self, None, base_model_id))
        if format != "adapterhub":
            raise InvalidAdapterError(f"unknown recipe format {format!r}; use 'adapterhub' or 'adapters'")
        return recipes.save_composition(self, Path(path), active, name)

    def load_composition(self, path: str | Path, set_active: bool = False,
                         pull: Callable[[str], Path] | None = None) -> Block | str:
        """Load a recipe: its adapters (folders or registry references, fetched by ``pull``), layers,
        and the named composition; or a setup ``adapters`` saved (``adapter_setup.json``)."""
        from adapterhub.compose.composition import recipes
        from adapterhub.compose.folder import adapters_setup

        if adapters_setup.is_adapters_setup(Path(path)) and not (Path(path) / fmt.RECIPE_FILE).is_file():
            block = adapters_setup.load_adapters_setup(self, Path(path))
        else:
            block = recipes.load_composition(self, Path(path), pull=pull)
        if set_active:
            self.set_active(block)
        return block
