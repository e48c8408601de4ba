"""What "a refused load left the model as it was" means: the same adapters, compositions, active
setting and every tensor of the state dict equal to the last bit.

>>> snap = model_snapshot(model)                     # doctest: +SKIP
>>> ...  # a load that must fail
>>> assert_model_unchanged(model, snap)              # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch


def model_snapshot(model) -> tuple[dict[str, torch.Tensor], tuple[str, ...], dict[str, Any], Any]:
    return ({k: v.detach().clone() for k, v in model.state_dict().items()}, tuple(model.adapters),
            dict(model.compositions), model.active_composition)


def assert_model_unchanged(model, snap) -> None:
    state, names, compositions, active = snap
    assert tuple(model.adapters) == names
    assert dict(model.compositions) == compositions
    assert model.active_composition == active
    now = model.state_dict()
    assert set(now) == set(state)
    for key, value in state.items():
        assert torch.equal(now[key], value), key
