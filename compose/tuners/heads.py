"""``modules_to_save``: per-adapter trainable copies of whole modules, such as a classification head.

The original module's class is swapped (as for adapter sites) so that its weights keep their names;
the copies live in ``ah_heads`` and the active adapter's copy runs instead of the original.
"""

from __future__ import annotations

import copy

from torch import nn

from adapterhub.compose.tuners.site import AdapterState, base_named_modules


class HeadMixin:
    ah_heads: nn.ModuleDict
    ah_state: AdapterState

    def forward(self, *args, **kwargs):
        state = self.ah_state
        if state.row_plan is not None and not state.disabled:
            return state.row_plan.apply_head(self, *args, **kwargs)
        if not state.disabled:
            for name in reversed(state.active):
                if name in self.ah_heads:
                    return self.ah_heads[name](*args, **kwargs)
        return super().forward(*args, **kwargs)

    def base_head(self, *args, **kwargs):
        """The original module's forward (rows of a per-row batch without their own copy)."""
        return super().forward(*args, **kwargs)


_HEAD_CLASSES: dict[type, type] = {}


def pristine_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` as transformers built it, without any adapter copies inside."""
    clone = copy.deepcopy(module)
    if isinstance(clone, HeadMixin):
        del clone._modules["ah_heads"]
        clone.__class__ = clone.__class__.__mro__[2]
    return clone


def add_head(module: nn.Module, state: AdapterState, adapter: str) -> nn.Module:
    head = pristine_copy(module)
    if not isinstance(module, HeadMixin):
        base_cls = type(module)
        cls = _HEAD_CLASSES.get(base_cls)
        if cls is None:
            cls = type(base_cls.__name__, (HeadMixin, base_cls), {"__module__": base_cls.__module__})
            _HEAD_CLASSES[base_cls] = cls
        module.__class__ = cls
        nn.Module.__setattr__(module, "ah_state", state)
        module.ah_heads = nn.ModuleDict()
    module.ah_heads[adapter] = head
    return head


def iter_heads(model: nn.Module):
    for name, module in base_named_modules(model):
        if isinstance(module, HeadMixin):
            yield name, module
