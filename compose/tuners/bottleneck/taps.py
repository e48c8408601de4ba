"""What a bottleneck adapter needs from its sublayer besides the projection's output: the residual
input, captured by a forward pre-hook on the module that receives it, and the sublayer's LayerNorm.

One tap per site, shared by every adapter there, installed when the first adapter that reads the
residual is added (``arch.Sublayer`` says where to look). The captured tensor is the one the model
passes on, not a copy: the next forward overwrites it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import torch
from torch import nn

from adapterhub.compose.core.arch import Sublayer, arch_spec
from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.errors import InvalidAdapterError


class SublayerTap:
    """The residual input of the sublayer a site closes, as the model last ran it (not a Module:
    the LayerNorm is the model's own and must not be registered twice)."""

    def __init__(self, source: nn.Module, arg: int, layer_norm: nn.Module | None):
        self.residual: torch.Tensor | None = None
        self.layer_norm = layer_norm
        self.post_ln = layer_norm is not None
        self.handle = source.register_forward_pre_hook(self._capture, with_kwargs=True)
        self._arg = arg
        self._rows: torch.Tensor | None = None

    @property
    def value(self) -> torch.Tensor | None:
        """The residual of the rows the site is computing (all of them, but in a per-row batch)."""
        if self._rows is None or self.residual is None:
            return self.residual
        return self.residual.index_select(0, self._rows)

    @contextlib.contextmanager
    def selecting(self, rows: torch.Tensor):
        self._rows = rows
        try:
            yield
        finally:
            self._rows = None

    def _capture(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if len(args) > self._arg:
            self.residual = args[self._arg]
        else:  # called with keywords: the first tensor after the positional ones
            tensors = [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
            self.residual = tensors[self._arg - len(args)] if len(tensors) > self._arg - len(args) else None


def plan_taps(model: nn.Module, site_names: list[str], config: BottleneckConfig) -> Callable[[str, nn.Module], None]:
    """Find every site's residual source and LayerNorm now, raising before the model changes; return
    what installs the taps once the sites exist."""
    if not config.needs_residual:
        return lambda name, site: None
    model_type = getattr(model.config, "model_type", "")
    try:
        sublayers = arch_spec(model_type).sublayers
    except InvalidAdapterError:
        sublayers = ()
    found: dict[str, tuple[nn.Module, int, nn.Module | None]] = {}
    for name in site_names:
        sub, match = _sublayer_of(sublayers, name)
        if sub is None:
            raise InvalidAdapterError(
                f"bottleneck adapter at {name!r}: adapterhub does not know where this {model_type} module's "
                "residual input comes from, which original_ln_before, is_parallel and original_ln_after=False "
                "need; target the attention or feed-forward output projections")
        try:
            source = model.get_submodule(sub.residual.format(b=match["b"]))
            layer_norm = model.get_submodule(sub.layer_norm.format(b=match["b"])) if sub.layer_norm else None
        except AttributeError as exc:
            raise InvalidAdapterError(f"bottleneck adapter at {name!r}: this {model_type} model lacks the "
                                      f"module its residual input comes from ({exc})") from None
        if layer_norm is not None and not config.original_ln_after:
            raise InvalidAdapterError(
                f"bottleneck adapter at {name!r}: original_ln_after=False is not supported on {model_type}: "
                "the sublayer's own LayerNorm always runs after the adapter here")
        found[name] = (source, sub.residual_arg, layer_norm)

    def install(name: str, site: nn.Module) -> None:
        if "ah_sublayer" not in site.__dict__:
            site.__dict__["ah_sublayer"] = SublayerTap(*found[name])

    return install


def _sublayer_of(sublayers: tuple[Sublayer, ...], name: str) -> tuple[Sublayer | None, re.Match | None]:
    for sub in sublayers:
        match = re.fullmatch(sub.site_pattern, name)
        if match:
            return sub, match
    return None, None
