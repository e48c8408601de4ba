"""A one-minute tour of the engine on a small random LLaMA: attach, train, save, reload, merge.

Run by ``adapterhub demo`` (and by ``make up`` before the registry starts) so that a new user
sees the engine work end to end without downloading anything.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def run_demo(say: Callable[[str], None] = print, steps: int = 30) -> dict[str, float]:
    from transformers import LlamaConfig, LlamaForCausalLM

    import adapterhub as ah

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256)
    model = ah.AdapterModel(LlamaForCausalLM(cfg))
    say(f"base model: LlamaForCausalLM, {sum(p.numel() for p in model.parameters()):,} parameters (random init)")
    model.add_adapter("demo", ah.LoRAConfig(r=8, alpha=16, target_modules=["q_proj", "v_proj", "down_proj"]))
    model.train_adapter("demo")
    say(f"attached LoRA 'demo': {model.trainable_parameters()}")
    ids = (torch.arange(32).repeat(8, 1) * 7 + torch.arange(8)[:, None]) % 256
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    start = time.perf_counter()
    first = last = 0.0
    for step in range(steps):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        first = loss.item() if step == 0 else first
        last = loss.item()
    say(f"trained {steps} steps in {time.perf_counter() - start:.1f}s: loss {first:.3f} -> {last:.3f}")
    model.eval()
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save_adapter("demo", Path(tmp) / "demo")
        files = ", ".join(sorted(p.name for p in folder.iterdir()))
        say(f"saved to {folder.name}/ ({files})")
        torch.manual_seed(0)
        fresh = ah.AdapterModel(LlamaForCausalLM(cfg)).eval()
        fresh.load_adapter(folder, set_active=True)
        with torch.no_grad():
            reload_diff = (fresh(input_ids=ids).logits - adapted).abs().max().item()
    say(f"reloaded into a fresh model: max |logit difference| = {reload_diff:.2e}")
    fresh.merge("demo")
    with torch.no_grad():
        merge_diff = (fresh(input_ids=ids).logits - adapted).abs().max().item()
    say(f"merged into the base weights: max |logit difference| = {merge_diff:.2e}")
    fresh.unmerge()
    return {"loss_first": first, "loss_last": last, "reload_diff": reload_diff, "merge_diff": merge_diff}
