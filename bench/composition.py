"""Composition bench: per-row mixed batches, hot-loading, and block overheads, ours vs PEFT in one run.

Same LLaMA shape as the engine bench (SmolLM2-135M). Rows:
- a mixed batch over N distinct LoRA adapters (r=16 on q,k,v,o): ours with ``adapter_names``,
  PEFT with ``adapter_names``, and ours looping ``set_active`` per group — tokens/s, and the
  fraction of the bare base model's throughput;
- hot-load of a LoRA folder into a live model: ours ``load_adapter``, PEFT ``load_adapter``,
  PEFT ``hotswap_adapter``, and the bare ``safetensors`` file read; ours' 2nd vs 100th load;
- Stack / Fuse / Average / Route forward overhead over a single adapter.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import peft
import torch
from peft.utils.hotswap import hotswap_adapter
from safetensors.torch import load_file

import adapterhub as ah
from adapterhub.format import WEIGHTS_FILE
from bench.common import median, paired_ratio, setup_torch, time_interleaved
from bench.engine import _llama

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _ids(batch: int, seq: int) -> torch.Tensor:
    return torch.randint(0, 49152, (batch, seq), generator=torch.Generator().manual_seed(0))


def _lora(i: int) -> ah.LoRAConfig:
    return ah.LoRAConfig(r=16, alpha=32, target_modules=TARGETS, init_lora_weights=False)


def mixed_batch(layers: int, counts: list[int], batch: int, seq: int, repeats: int) -> dict:
    torch.manual_seed(0)
    base = _llama(layers).eval()
    ids = _ids(batch, seq)
    return {str(n): _mixed_one(base, ids, n, repeats) for n in counts}


def _mixed_one(base: torch.nn.Module, ids: torch.Tensor, n: int, repeats: int) -> dict:
    ours = ah.AdapterModel(copy.deepcopy(base))
    names = [f"a{i}" for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            ours.add_adapter(name, _lora(0))
        ours.save_adapter(names[0], Path(tmp) / "first", format="peft")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), Path(tmp) / "first", adapter_name=names[0])
        for name in names[1:]:
            ours.save_adapter(name, Path(tmp) / name, format="peft")
            theirs.load_adapter(Path(tmp) / name, adapter_name=name)
    theirs.eval()
    batch = ids.shape[0]
    rows = [names[i % n] for i in range(batch)]
    groups = {name: [i for i, r in enumerate(rows) if r == name] for name in names}
    groups = {name: idx for name, idx in groups.items() if idx}  # more adapters loaded than rows

    def loop() -> None:
        for name, idx in groups.items():
            ours.set_active(name)
            ours(input_ids=ids[idx])

    with torch.inference_mode():
        samples = time_interleaved({
            "base": lambda: base(input_ids=ids),
            "ours": lambda: ours(input_ids=ids, adapter_names=rows),
            "peft": lambda: theirs(input_ids=ids, adapter_names=rows),
            "loop": loop,
        }, repeats=repeats)
    med = {k: median(v) for k, v in samples.items()}
    tokens = ids.numel()
    return {
        "seconds": med,
        "tokens_per_s": {k: tokens / v for k, v in med.items()},
        "fraction_of_base": {k: paired_ratio(samples["base"], v) for k, v in samples.items() if k != "base"},
        "ours_vs_peft_speed": paired_ratio(samples["peft"], samples["ours"]),
    }


def hot_load(layers: int, loads: int) -> dict:
    torch.manual_seed(0)
    base = _llama(layers).eval()
    src = ah.AdapterModel(copy.deepcopy(base))
    src.add_adapter("src", _lora(0))
    with tempfile.TemporaryDirectory() as tmp:
        folder = src.save_adapter("src", Path(tmp) / "src", format="peft")
        ours = ah.AdapterModel(copy.deepcopy(base))
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), folder, adapter_name="default")
        ours_times = []
        for i in range(loads):
            start = time.perf_counter()
            ours.load_adapter(folder, name=f"x{i}")
            ours_times.append(time.perf_counter() - start)
        peft_times, swap_times, read_times = [], [], []
        for i in range(10):
            start = time.perf_counter()
            theirs.load_adapter(folder, adapter_name=f"p{i}")
            peft_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            hotswap_adapter(theirs, str(folder), adapter_name="default")
            swap_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            load_file(str(folder / WEIGHTS_FILE))
            read_times.append(time.perf_counter() - start)
        replace_times = []
        for _ in range(10):
            start = time.perf_counter()
            ours.load_adapter(folder, name="x0", replace=True)
            replace_times.append(time.perf_counter() - start)
        size = (folder / WEIGHTS_FILE).stat().st_size
    ms = 1000.0
    return {
        "file_mb": size / 1e6,
        "ours_load_ms": median(ours_times[1:11]) * ms,
        # the mean includes the process's gen-2 garbage collections, which some loads trigger
        "ours_load_mean_ms": sum(ours_times[1:]) / len(ours_times[1:]) * ms,
        "ours_load_max_ms": max(ours_times[1:]) * ms,
        "ours_replace_ms": median(replace_times) * ms,
        "peft_load_ms": median(peft_times) * ms,
        "peft_hotswap_ms": median(swap_times) * ms,
        "file_read_ms": median(read_times) * ms,
        "ours_2nd_ms": ours_times[1] * ms,
        "ours_last_ms": median(ours_times[-5:]) * ms,
        "loads": loads,
    }


def blocks(layers: int, batch: int, seq: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = ah.AdapterModel(_llama(layers).eval())
    for name in ("a", "b"):
        model.add_adapter(name, _lora(0))
    fuse, route = ah.Fuse("a", "b"), ah.Route("a", "b", top_k=1)
    model.add_fusion(fuse)
    model.add_router(route)
    ids = _ids(batch, seq)

    def run(active) -> Callable[[], object]:
        def call() -> object:
            model.set_active(active)
            return model(input_ids=ids)
        return call

    with torch.inference_mode():
        samples = time_interleaved({
            "single": run("a"), "stack": run(ah.Stack("a", "b")), "average": run(ah.Average("a", "b")),
            "fuse": run(fuse), "route": run(route),
        }, repeats=repeats)
    med = {k: median(v) for k, v in samples.items()}
    return {"seconds": med, "overhead_over_single": {k: v / med["single"] - 1 for k, v in med.items()}}


def run(quick: bool, selected: Callable[[str], bool] = lambda _k: True) -> dict:
    setup_torch()
    layers = 2 if quick else 30
    repeats = 3 if quick else 9
    results: dict = {"layers": layers, "repeats": repeats}
    if selected("composition/mixed"):
        print("composition/mixed: 32 x 64 over 8, 32 and 128 loaded LoRA adapters ...", flush=True)
        results["mixed"] = mixed_batch(layers, [8, 32, 128], batch=32, seq=64, repeats=repeats)
    if selected("composition/hotload"):
        print("composition/hotload ...", flush=True)
        results["hotload"] = hot_load(layers, loads=20 if quick else 100)
    if selected("composition/blocks"):
        print("composition/blocks: 8 x 128 ...", flush=True)
        results["blocks"] = blocks(layers, batch=8, seq=128, repeats=repeats)
    return results


def print_tables(results: dict) -> None:
    for n, row in results.get("mixed", {}).items():
        f = row["fraction_of_base"]
        t = row["tokens_per_s"]
        print(f"mixed batch over {n} adapters: tokens/s base {t['base']:.0f}, ours {t['ours']:.0f} ({f['ours']:.2f} of base), "
              f"PEFT {t['peft']:.0f} ({f['peft']:.2f}), loop {t['loop']:.0f} ({f['loop']:.2f}); ours/PEFT speed "
              f"{row['ours_vs_peft_speed']:.2f}x")
    h = results.get("hotload")
    if h:
        print(f"hot-load of a {h['file_mb']:.1f} MB LoRA: ours {h['ours_load_ms']:.1f} ms (replace {h['ours_replace_ms']:.1f} ms), "
              f"PEFT load_adapter {h['peft_load_ms']:.1f} ms, PEFT hotswap {h['peft_hotswap_ms']:.1f} ms, file read "
              f"{h['file_read_ms']:.1f} ms; ours 2nd {h['ours_2nd_ms']:.1f} ms vs last of {h['loads']} {h['ours_last_ms']:.1f} ms; "
              f"ours mean {h['ours_load_mean_ms']:.1f} ms, max {h['ours_load_max_ms']:.1f} ms (garbage collections included)")
    b = results.get("blocks")
    if b:
        print("block overhead over a single adapter: " + ", ".join(
            f"{k} {v * 100:+.1f}%" for k, v in b["overhead_over_single"].items() if k != "single"))
