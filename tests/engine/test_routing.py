"""Route: a mixture of adapter experts with trainable per-site routers."""

from __future__ import annotations

import pytest
import torch

import adapterhub as ah
from adapterhub.compose import execute
from tests.helpers.tiny import batch, build


def _experts(arch="llama-causal", **lora):
    model = ah.AdapterModel(build(arch))
    model.add_adapter("x", ah.LoRAConfig(r=4, init_lora_weights=False, **lora))
    model.add_adapter("y", ah.LoRAConfig(r=2, init_lora_weights=False, **lora))
    model.add_adapter("z", ah.BottleneckConfig(init_weights=False))
    return model


def test_top1_route_gives_each_token_exactly_one_experts_output():
    model = _experts()
    route = ah.Route("x", "y", top_k=1)
    model.add_router(route)
    site = model.get_submodule("model.layers.0.self_attn.q_proj")
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        got = execute.site_output(site, route, x)
        choice = site.ah_routers["x+y"].last_choice
        outs = torch.stack([execute.site_output(site, n, x) for n in ("x", "y")])  # (2, batch, tokens, d)
    expected = torch.where(choice[..., None] == 0, outs[0], outs[1])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_top2_route_renormalises_the_softmax_over_the_chosen_experts():
    model = _experts()
    route = ah.Route("x", "y", "z", top_k=2)
    model.add_router(route)
    site = model.get_submodule("model.layers.0.self_attn.q_proj")  # z (bottleneck) is not here
    x = torch.randn(1, 4, 32)
    with torch.no_grad():
        logits = site.ah_routers["x+y+z"].router(x)
        top, idx = logits.topk(2, dim=-1)
        gates = torch.zeros_like(logits).scatter(-1, idx, top.softmax(-1))
        base = site.base_forward(x)
        outs = [execute.site_output(site, n, x) for n in ("x", "y", "z")]
        expected = base + sum(gates[..., i : i + 1] * (o - base) for i, o in enumerate(outs))
        torch.testing.assert_close(execute.site_output(site, route, x), expected, atol=1e-6, rtol=0)


def test_route_adds_load_balancing_loss_to_the_model_loss():
    model = _experts()
    route = ah.Route("x", "y", top_k=1, aux_loss_coef=0.5)
    model.add_router(route)
    ids, mask = batch()
    model.set_active(route)
    out = model(input_ids=ids, attention_mask=mask, labels=ids)
    assert out.aux_loss.item() >= 0.5 - 1e-6  # n * sum f_i P_i >= 1 for any routing, times the coefficient
    model.set_active(ah.Route("x", "y", top_k=1, aux_loss_coef=0.0))
    plain = model(input_ids=ids, attention_mask=mask, labels=ids)
    torch.testing.assert_close(out.loss, plain.loss + out.aux_loss)
    assert model._ah_state.aux_losses is None


def test_train_router_trains_only_routers_and_round_trips(tmp_path):
    model = _experts()
    route = ah.Route("x", "y", top_k=1, noise_std=0.1)
    model.add_router(route)
    model.train_router(route)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".ah_routers.x+y.router." in n for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = batch()
    before = {n: p.clone() for n, p in model.named_parameters()}
    for _ in range(3):
        opt.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
        opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(trainable)
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
    for name in ("x", "y"):
        model.save_adapter(name, tmp_path / name)
    model.save_router(route, tmp_path / "router")
    fresh = ah.AdapterModel(build("llama-causal"))
    for name in ("x", "y"):
        fresh.load_adapter(tmp_path / name)
    assert fresh.load_router(tmp_path / "router") == route
    fresh.set_active(route)
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=0)
    assert set(fresh.router_choices(route)) == {n for n, m in fresh.named_modules() if hasattr(m, "ah_routers")}


# ---------------------------------------------------------------------- the mixture-of-experts acceptance test
PATTERNS = {"a": torch.tensor([5, 17, 29, 41]), "b": torch.tensor([50, 62, 74, 86])}  # disjoint vocabularies


def _task(kind: str, rows: int, g: torch.Generator, length: int = 16) -> torch.Tensor:
    """A 4-token cycle starting at a random phase: the next token is a function of the current one."""
    phase = torch.randint(0, 4, (rows, 1), generator=g)
    return PATTERNS[kind][(phase + torch.arange(length)) % 4]


def _lm_loss(model, ids) -> float:
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    return (out.loss - out.get("aux_loss", 0.0)).item()


@pytest.fixture
def one_thread():
    """~200 tiny training steps: thread hand-offs cost more than the matmuls on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_router_sends_each_tasks_tokens_to_its_expert(one_thread):
    g = torch.Generator().manual_seed(1)
    model = ah.AdapterModel(build("llama-causal", seed=1, initializer_range=0.1))
    for name in ("a", "b"):  # one expert per task, trained alone
        model.add_adapter(name, ah.LoRAConfig(r=8, alpha=16, target_modules=["up_proj", "down_proj"]))
        model.train_adapter(name)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
        for _ in range(30):
            ids = _task(name, 16, g)
            opt.zero_grad()
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
    route = ah.Route("a", "b", top_k=1, aux_loss_coef=0.1)
    model.add_router(route)
    model.train_router(route)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(150):  # the router alone, on the mixture
        ids = torch.cat([_task("a", 8, g), _task("b", 8, g)])
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    model.eval()
    for expert, kind in enumerate(("a", "b")):
        ids = _task(kind, 32, g)
        routed = _lm_loss(model, ids)
        choices = model.router_choices(route)
        share = torch.stack([(c == expert).float().mean() for c in choices.values()]).mean().item()
        model.set_active(kind)
        own = _lm_loss(model, ids)
        model.set_active(route)
        assert share >= 0.9, f"task {kind}: only {share:.1%} of token routings went to its expert"
        assert routed <= 1.1 * own, f"task {kind}: routed loss {routed:.3f}, its expert's {own:.3f}"
