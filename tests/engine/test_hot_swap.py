"""Hot-swap and loading many adapters: weights copied into existing slots; no per-adapter slowdown."""

from __future__ import annotations

import statistics
import time

import torch

import adapterhub as ah
from tests.helpers.tiny import batch, build


def _folders(tmp_path):
    model = ah.AdapterModel(build("llama-causal"))
    for name, seed in (("one", 1), ("two", 2)):
        torch.manual_seed(seed)
        model.add_adapter(name, ah.LoRAConfig(r=8, alpha=16, init_lora_weights=False))
        model.save_adapter(name, tmp_path / name)
    return tmp_path / "one", tmp_path / "two"


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_replace_copies_weights_into_the_existing_slot(tmp_path):
    one, two = _folders(tmp_path)
    ids, _ = batch()
    reference = ah.AdapterModel(build("llama-causal"))
    reference.load_adapter(two, set_active=True)
    expected = _logits(reference, ids)

    model = ah.AdapterModel(build("llama-causal"))
    model.load_adapter(one, name="slot", set_active=True)
    modules = {n: id(m) for n, m in model.named_modules()}
    storage = [p.data_ptr() for p in model.adapter_parameters("slot")]
    model.load_adapter(two, name="slot", replace=True)
    assert {n: id(m) for n, m in model.named_modules()} == modules  # nothing re-wrapped or rebuilt
    assert [p.data_ptr() for p in model.adapter_parameters("slot")] == storage
    torch.testing.assert_close(_logits(model, ids), expected, atol=1e-6, rtol=0)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_loading_the_100th_adapter_is_as_fast_as_the_2nd(tmp_path):
    """Measured, not a benchmark: only a growing cost (say quadratic in the adapters loaded) fails."""
    one, two = _folders(tmp_path)
    model = ah.AdapterModel(build("llama-causal"))
    loads = [_timed(lambda i=i: model.load_adapter(one, name=f"a{i}")) for i in range(100)]
    early, late = statistics.median(loads[1:6]), statistics.median(loads[-5:])
    assert late < 5 * early, f"2nd-6th loads {early * 1e3:.1f} ms, 96th-100th {late * 1e3:.1f} ms"

    small = ah.AdapterModel(build("llama-causal"))
    small.load_adapter(one, name="a0")
    small.load_adapter(one, name="a1")
    swap_small = statistics.median(_timed(lambda: small.load_adapter(two, name="a1", replace=True)) for _ in range(5))
    swap_full = statistics.median(_timed(lambda: model.load_adapter(two, name="a50", replace=True)) for _ in range(5))
    assert swap_full < 5 * swap_small, f"swap with 2 loaded {swap_small * 1e3:.1f} ms, with 100 {swap_full * 1e3:.1f} ms"
