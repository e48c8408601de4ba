"""Route: a mixture of adapter experts with trainable per-site routers."""

from __future__ import annotations

import pytest
import torch

import adapterhub as ah
from adapterhub.compose.composition import execute, routing
from adapterhub.compose.composition.blocks import block_from_dict
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
        choice = routing.last_choices(site, "x+y")
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
    assert model.ah.state.aux_losses is None


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


@pytest.mark.parametrize("scope", ["site", "layer", "shared"])
@pytest.mark.slow
def test_router_sends_each_tasks_tokens_to_its_expert(one_thread, scope):
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
    route = ah.Route("a", "b", top_k=1, aux_loss_coef=0.1, scope=scope)
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


# ---------------------------------------------------------------------- router scope: per site, per layer, shared
def _scoped(scope: str):
    model = ah.AdapterModel(build("llama-causal"))
    for name, r in (("x", 4), ("y", 2)):
        model.add_adapter(name, ah.LoRAConfig(r=r, init_lora_weights=False, target_modules=["q_proj", "v_proj", "down_proj"]))
    route = ah.Route("x", "y", top_k=1, scope=scope)
    model.add_router(route)
    return model, route


def _routers(model, route) -> dict[str, object]:
    return {n: m.ah_routers[route.key()] for n, m in model.named_modules() if hasattr(m, "ah_routers")}


@pytest.mark.parametrize(("scope", "expected_groups"), [
    ("site", 6),    # q, v, down in each of the 2 layers
    ("layer", 4),   # per layer: one for q and v (hidden width), one for down (intermediate width)
    ("shared", 2),  # one per input width for the whole model
])
def test_router_scope_sets_how_many_routers_exist(scope, expected_groups):
    model, route = _scoped(scope)
    routers = _routers(model, route)
    assert len(routers) == 6
    assert len({id(r) for r in routers.values()}) == expected_groups
    model.train_router(route)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    widths = {"q_proj": 32, "v_proj": 32, "down_proj": 64}
    per_site = sum(2 * widths[p.rsplit(".", 1)[1]] for p in routers)
    assert trainable == {"site": per_site, "layer": 2 * (32 + 64) * 2, "shared": 2 * (32 + 64)}[scope]
    if scope == "layer":
        assert routers["model.layers.0.self_attn.q_proj"] is routers["model.layers.0.self_attn.v_proj"]
        assert routers["model.layers.0.self_attn.q_proj"] is not routers["model.layers.1.self_attn.q_proj"]
    if scope == "shared":
        assert routers["model.layers.0.self_attn.q_proj"] is routers["model.layers.1.self_attn.v_proj"]
        assert routers["model.layers.0.mlp.down_proj"] is routers["model.layers.1.mlp.down_proj"]


def test_shared_router_trains_saves_once_and_reloads(tmp_path):
    from safetensors.torch import load_file

    model, route = _scoped("shared")
    model.train_router(route)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = batch()
    for _ in range(3):
        opt.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
    choices = model.router_choices(route)
    assert len(choices) == 6  # one record per site, though only two routers exist
    for name in ("x", "y"):
        model.save_adapter(name, tmp_path / name)
    model.save_router(route, tmp_path / "router")
    assert len(load_file(tmp_path / "router" / "adapter_model.safetensors")) == 2
    fresh = ah.AdapterModel(build("llama-causal"))
    for name in ("x", "y"):
        fresh.load_adapter(tmp_path / name)
    assert fresh.load_router(tmp_path / "router") == route
    assert len({id(r) for r in _routers(fresh, route).values()}) == 2
    fresh.set_active(route)
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=0)
    for path, choice in fresh.router_choices(route).items():
        assert torch.equal(choice, choices[path])


def test_routes_of_different_scope_keep_separate_routers():
    model, site_route = _scoped("site")
    layer_route = ah.Route("x", "y", top_k=1, scope="layer")
    with pytest.raises(ah.CompositionError, match=r"Route\(x\+y@layer\) has no trained layers"):
        model.set_active(layer_route)
    model.add_router(layer_route)
    site = model.get_submodule("model.layers.0.self_attn.q_proj")
    assert set(site.ah_routers) == {"x+y", "x+y@layer"}
    model.delete_adapter("y")
    assert not hasattr(site, "ah_routers") or not len(site.ah_routers)


def test_route_scope_must_be_known():
    with pytest.raises(ah.CompositionError, match=r"Route scope must be one of site, layer, shared, got 'token'"):
        ah.Route("x", "y", scope="token")
    assert ah.Route("x", "y").to_dict()["kwargs"]["scope"] == "site"
    old = {"type": "Route", "children": ["x", "y"], "kwargs": {"top_k": 1, "noise_std": 0.0, "aux_loss_coef": 0.01}}
    assert block_from_dict(old) == ah.Route("x", "y")  # recipes written before scopes existed
