"""Rollouts over REST against a real uvicorn, on SQLite and on PostgreSQL: manual moves, the
automatic rules, sticky resolve, and every refusal with its exact status and message."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapterhub.registry.server.canary import arm_for
from tests.registry.factory import adapter_files, client, push

HEALTHY = [{"arm": "stable", "requests": 1000, "errors": 10, "latency_sum": 100.0, "latency_sq_sum": 11.0},
           {"arm": "canary", "requests": 60, "errors": 0, "latency_sum": 6.0, "latency_sq_sum": 0.7}]
FAST_SCHEDULE = {"steps": [5, 25, 50, 100], "min_duration_s": 0, "min_requests": 50}


@pytest.fixture
def prod(user):
    """``(ns, client, base)``: adapter ``svc`` with 1.0.0 on alias ``prod`` and 1.1.0 published."""
    ns, c = user
    assert push(c, ns, "svc", "1.0.0", adapter_files(1), alias="prod").status_code == 201
    assert push(c, ns, "svc", "1.1.0", adapter_files(2), create=False).status_code == 201
    return ns, c, f"/api/v1/adapters/{ns}/svc"


def start(c, base, **body):
    r = c.post(f"{base}/rollouts", json={"alias": "prod", "canary_version": "1.1.0", **body})
    assert r.status_code == 201, r.text
    return r.json()


def actions(c, base):
    return [(e["action"], e["actor"], e["details"].get("weight")) for e in c.get(f"{base}/audit").json()
            if e["action"].startswith(("rollout.", "alias."))]


def history(c, base):
    return [(h["version"], h["actor"]) for h in c.get(f"{base}/aliases/prod/history").json()]


def resolve(c, base, key=None):
    params = {"ref": ":prod", **({"key": key} if key is not None else {})}
    r = c.get(f"{base}/resolve", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_start_reports_the_rollout_with_per_arm_figures(prod, anon):
    ns, c, base = prod
    out = start(c, base, weight=10)
    assert (out["alias"], out["stable_version"], out["canary_version"], out["weight"], out["state"]) == (
        "prod", "1.0.0", "1.1.0", 10, "active")
    assert out["next_step"] is None and out["created_by"] == ns and out["reason"] == "started"
    assert out["thresholds"] == {"p_value": 0.01, "min_requests": 100, "latency_tolerance": 0.2,
                                 "quality_tolerance": 0.05}
    assert out["arms"]["canary"] == {"version": "1.1.0", "requests": 0, "errors": 0, "error_rate": None,
                                     "latency_mean": None, "latency_std": None, "quality_mean": None,
                                     "quality_n": 0}
    assert anon.get(f"{base}/rollouts/prod").json() == out
    assert [r["id"] for r in anon.get(f"{base}/rollouts", params={"alias": "prod"}).json()] == [out["id"]]
    r = c.post(f"{base}/rollouts/prod/outcomes", json={"batches": HEALTHY[:1] + [
        {"arm": "canary", "requests": 4, "errors": 1, "latency_sum": 0.8, "latency_sq_sum": 0.2,
         "quality_sum": 3.0, "quality_n": 4}]})
    assert r.status_code == 200, r.text
    canary = r.json()["arms"]["canary"]
    assert (canary["requests"], canary["errors"], canary["error_rate"], canary["quality_mean"]) == (4, 1, 0.25, 0.75)
    assert canary["latency_mean"] == pytest.approx(0.2) and canary["latency_std"] == pytest.approx(0.11547, rel=1e-3)
    assert r.json()["arms"]["stable"]["requests"] == 1000 and r.json()["state"] == "active"


def test_resolve_is_sticky_per_key_and_follows_the_weight(prod):
    _ns, c, base = prod
    rid = start(c, base, weight=30)["id"]
    assert resolve(c, base) == {"namespace": c.get("/api/v1/whoami").json()["user"], "name": "svc",
                                "version": "1.0.0", "commit": resolve(c, base)["commit"], "arm": "stable",
                                "rollout_id": rid}
    keys = [f"tenant-{i}" for i in range(60)]
    got = {k: resolve(c, base, k) for k in keys}
    for k, body in got.items():
        assert body["arm"] == arm_for(rid, 30, k) and body["rollout_id"] == rid
        assert body["version"] == ("1.1.0" if body["arm"] == "canary" else "1.0.0")
    on_canary = [k for k in keys if got[k]["arm"] == "canary"]
    assert on_canary and len(on_canary) < len(keys)
    assert c.post(f"{base}/rollouts/prod/step", json={"weight": 60}).status_code == 200
    assert all(resolve(c, base, k)["arm"] == "canary" for k in on_canary)  # the cache was invalidated
    assert c.get(f"{base}/resolve", params={"ref": "@1.0.0", "key": "x"}).json()["arm"] == "stable"


def test_manual_step_pause_resume_promote_moves_the_alias(prod):
    ns, c, base = prod
    start(c, base, weight=10)
    assert c.post(f"{base}/rollouts/prod/step", json={"weight": 50}).json()["weight"] == 50
    assert c.post(f"{base}/rollouts/prod/pause").json()["state"] == "paused"
    assert c.post(f"{base}/rollouts/prod/resume", json={"reason": "looks fine"}).json()["state"] == "active"
    out = c.post(f"{base}/rollouts/prod/promote").json()
    assert (out["state"], out["weight"], out["next_step"]) == ("promoted", 100, None)
    assert c.get(f"{base}/aliases").json() == {"prod": "1.1.0"}
    assert resolve(c, base, "tenant-1") | {"commit": None} == {
        "namespace": ns, "name": "svc", "version": "1.1.0", "commit": None, "arm": "stable", "rollout_id": None}
    assert actions(c, base) == [
        ("alias.set", ns, None), ("rollout.start", ns, 10), ("rollout.step", ns, 50), ("rollout.pause", ns, 50),
        ("rollout.resume", ns, 50), ("alias.set", ns, None), ("rollout.promote", ns, 100)]
    assert history(c, base) == [("1.0.0", ns), ("1.1.0", ns)]


def test_manual_rollback_keeps_the_alias(prod):
    ns, c, base = prod
    start(c, base, weight=20)
    out = c.post(f"{base}/rollouts/prod/rollback", json={"reason": "bad vibes"}).json()
    assert (out["state"], out["weight"], out["reason"]) == ("rolled_back", 0, "bad vibes")
    assert c.get(f"{base}/aliases").json() == {"prod": "1.0.0"}
    assert resolve(c, base, "k")["rollout_id"] is None
    entry = c.get(f"{base}/audit").json()[-1]
    assert (entry["action"], entry["details"]["reason"], entry["details"]["previous_weight"]) == (
        "rollout.rollback", "bad vibes", 20)
    assert start(c, base, weight=5)["state"] == "active"  # the alias is free for a new rollout


def test_bad_canary_is_rolled_back_automatically(prod):
    ns, c, base = prod
    rid = start(c, base, weight=10, schedule=FAST_SCHEDULE)["id"]
    bad = [HEALTHY[0], {"arm": "canary", "requests": 150, "errors": 30, "latency_sum": 15.0,
                        "latency_sq_sum": 1.6}]
    out = c.post(f"{base}/rollouts/prod/outcomes", json={"rollout_id": rid, "batches": bad}).json()
    assert (out["state"], out["weight"]) == ("rolled_back", 0)
    assert out["reason"].startswith("canary error rate 20.00% is worse than stable 1.00% (one-sided")
    assert out["error_p_value"] < 0.01
    entry = c.get(f"{base}/audit").json()[-1]
    assert (entry["action"], entry["actor"], entry["details"]["automatic"]) == (
        "rollout.rollback", "rollout-rules", True)
    assert entry["details"]["reason"] == out["reason"]
    assert c.get(f"{base}/aliases").json() == {"prod": "1.0.0"}
    assert resolve(c, base, "tenant-1")["version"] == "1.0.0" and history(c, base) == [("1.0.0", ns)]
    r = c.post(f"{base}/rollouts/prod/outcomes", json={"batches": HEALTHY})
    assert (r.status_code, r.json()["code"]) == (409, "RolloutNotActive")
    assert r.json()["detail"] == f"no active rollout on alias 'prod' (the latest, {rid}, is rolled_back)"


def test_latency_regression_is_rolled_back_automatically(prod):
    _ns, c, base = prod
    start(c, base, weight=10, thresholds={"min_requests": 50, "latency_tolerance": 0.5})
    slow = [HEALTHY[0], {"arm": "canary", "requests": 60, "errors": 0, "latency_sum": 9.6, "latency_sq_sum": 1.6}]
    out = c.post(f"{base}/rollouts/prod/outcomes", json={"batches": slow}).json()
    assert (out["state"], out["reason"]) == (
        "rolled_back", "canary mean latency 0.16s exceeds stable 0.1s by more than 50%")


def test_healthy_canary_steps_up_through_the_schedule_and_is_promoted(prod):
    ns, c, base = prod
    out = start(c, base, weight=5, schedule=FAST_SCHEDULE)
    assert out["next_step"] == 25
    seen = []
    for _ in range(3):
        out = c.post(f"{base}/rollouts/prod/outcomes", json={"batches": HEALTHY}).json()
        seen.append((out["state"], out["weight"]))
    assert seen == [("active", 25), ("active", 50), ("promoted", 100)]
    assert out["reason"].startswith("healthy at 50% for ")
    assert c.get(f"{base}/aliases").json() == {"prod": "1.1.0"}
    rules = "rollout-rules"
    assert actions(c, base) == [
        ("alias.set", ns, None), ("rollout.start", ns, 5), ("rollout.step", rules, 25), ("rollout.step", rules, 50),
        ("alias.set", rules, None), ("rollout.promote", rules, 100)]
    assert history(c, base) == [("1.0.0", ns), ("1.1.0", rules)]
    assert resolve(c, base, "anyone") | {"commit": None} == {
        "namespace": ns, "name": "svc", "version": "1.1.0", "commit": None, "arm": "stable", "rollout_id": None}


@pytest.mark.slow
def test_step_waits_for_its_minimum_duration_and_reading_applies_the_rules(prod):
    _ns, c, base = prod
    start(c, base, weight=5, schedule={**FAST_SCHEDULE, "min_duration_s": 1.5})
    assert c.post(f"{base}/rollouts/prod/outcomes", json={"batches": HEALTHY}).json()["weight"] == 5
    time.sleep(1.6)
    out = c.get(f"{base}/rollouts/prod").json()
    assert (out["state"], out["weight"]) == ("active", 25)
    assert c.post(f"{base}/rollouts/prod/pause").status_code == 200
    assert c.post(f"{base}/rollouts/prod/outcomes", json={"batches": HEALTHY}).json()["weight"] == 25
    time.sleep(1.6)
    assert c.get(f"{base}/rollouts/prod").json()["weight"] == 25  # paused: no step-up


def test_concurrent_reports_add_up_exactly(server, prod):
    _ns, c, base = prod
    start(c, base, weight=50)
    token = c.headers["authorization"].split(" ", 1)[1]
    batch = [{"arm": "stable", "requests": 3, "errors": 1, "latency_sum": 0.3, "latency_sq_sum": 0.03},
             {"arm": "canary", "requests": 2, "errors": 0, "latency_sum": 0.2, "latency_sq_sum": 0.02,
              "quality_sum": 1.5, "quality_n": 2}]

    def report(_i):
        with client(server.url, token) as own:
            for _ in range(5):
                r = own.post(f"{base}/rollouts/prod/outcomes", json={"batches": batch})
                assert r.status_code == 200, r.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(report, range(8)))
    arms = c.get(f"{base}/rollouts/prod").json()["arms"]
    assert (arms["stable"]["requests"], arms["stable"]["errors"], arms["canary"]["requests"]) == (120, 40, 80)
    assert arms["canary"]["quality_n"] == 80 and arms["canary"]["quality_mean"] == pytest.approx(0.75)
    assert arms["stable"]["latency_mean"] == pytest.approx(0.1)


# -- refusals: exact status, code and message; nothing changed -------------------------------------------


def snapshot(c, base):
    return (c.get(f"{base}/rollouts").json(), c.get(f"{base}/audit").json(), c.get(f"{base}/aliases").json())


def assert_error(r, status, code, detail):
    assert (r.status_code, r.json()) == (status, {"code": code, "detail": detail})


BAD_STARTS = [
    ({"canary_version": "9.9.9", "weight": 10}, 404, "RevisionNotFound", "version '9.9.9' not found"),
    ({"alias": "nope", "weight": 10}, 404, "RevisionNotFound", "no alias 'nope'"),
    ({"weight": 101}, 422, "InvalidRequest", "invalid request: weight: Input should be less than or equal to 100"),
    ({"weight": -1}, 422, "InvalidRequest", "invalid request: weight: Input should be greater than or equal to 0"),
    ({}, 422, "InvalidRequest", "invalid request: weight: Field required"),
    ({"canary_version": "1.0.0", "weight": 10}, 422, "InvalidRollout",
     "alias 'prod' already points at 1.0.0; nothing to roll out"),
    ({"weight": 10, "schedule": {"steps": [50, 25]}}, 422, "InvalidRequest",
     "invalid request: schedule.steps: Value error, steps must be strictly increasing weights in (0, 100], "
     "got [50.0, 25.0]"),
    ({"alias": "Bad/Alias", "weight": 10}, 422, "InvalidName",
     "invalid alias 'Bad/Alias': use 1-64 characters from [a-z0-9._-] (no '/'), starting with a letter or digit"),
]


@pytest.mark.parametrize(("body", "status", "code", "detail"), BAD_STARTS, ids=[b[2] + "-" + str(i) for i, b in
                                                                                enumerate(BAD_STARTS)])
def test_bad_start_is_refused_and_changes_nothing(prod, body, status, code, detail):
    _ns, c, base = prod
    before = snapshot(c, base)
    assert_error(c.post(f"{base}/rollouts", json={"alias": "prod", "canary_version": "1.1.0", **body}),
                 status, code, detail)
    assert snapshot(c, base) == before


def test_second_rollout_on_the_same_alias_is_409(prod):
    ns, c, base = prod
    rid = start(c, base, weight=10)["id"]
    before = snapshot(c, base)
    assert_error(c.post(f"{base}/rollouts", json={"alias": "prod", "canary_version": "1.1.0", "weight": 20}),
                 409, "RolloutExists",
                 f"alias 'prod' already has an active rollout ({rid}: 1.0.0 -> 1.1.0); promote or roll it back first")
    assert_error(c.put(f"{base}/aliases/prod", json={"version": "1.1.0"}), 409, "RolloutActive",
                 f"alias 'prod' is held by rollout {rid} (active); promote or roll it back first")
    assert_error(c.delete(f"{base}/aliases/prod"), 409, "RolloutActive",
                 f"alias 'prod' is held by rollout {rid} (active); promote or roll it back first")
    assert_error(push(c, ns, "svc", "1.2.0", adapter_files(3), alias="prod", create=False), 409, "RolloutActive",
                 f"alias 'prod' is held by rollout {rid} (active); promote or roll it back first")
    assert [v["version"] for v in c.get(f"{base}/versions").json()] == ["1.1.0", "1.0.0"]
    assert snapshot(c, base) == before


def test_writes_need_write_scope(server, admin, prod, anon):
    ns, c, base = prod
    start(c, base, weight=10)
    r = admin.post("/api/v1/tokens", json={"user": ns, "scope": "read", "namespaces": [ns]})
    before = snapshot(c, base)
    with client(server.url, r.json()["token"]) as reader:
        assert reader.get(f"{base}/rollouts/prod").status_code == 200
        for path, body in [("rollouts", {"alias": "prod", "canary_version": "1.1.0", "weight": 1}),
                           ("rollouts/prod/step", {"weight": 50}), ("rollouts/prod/pause", None),
                           ("rollouts/prod/promote", None), ("rollouts/prod/rollback", None),
                           ("rollouts/prod/outcomes", {"batches": HEALTHY})]:
            assert_error(reader.post(f"{base}/{path}", json=body), 403, "Forbidden",
                         f"your token has no write scope on namespace '{ns}'")
            assert_error(anon.post(f"{base}/{path}", json=body), 401, "Unauthorized",
                         "this call needs a token (Authorization: Bearer <token>)")
    assert snapshot(c, base) == before


def test_bad_transitions_and_outcomes_are_refused(prod):
    _ns, c, base = prod
    assert_error(c.get(f"{base}/rollouts/prod"), 404, "RolloutNotFound", "no rollout on alias 'prod'")
    assert_error(c.post(f"{base}/rollouts/prod/step", json={"weight": 5}), 404, "RolloutNotFound",
                 "no rollout on alias 'prod'")
    rid = start(c, base, weight=10)["id"]
    before = snapshot(c, base)
    assert_error(c.post(f"{base}/rollouts/prod/resume"), 409, "RolloutNotActive",
                 f"rollout {rid} is active; cannot resume it")
    assert_error(c.post(f"{base}/rollouts/prod/step", json={"weight": 100.5}), 422, "InvalidRequest",
                 "invalid request: weight: Input should be less than or equal to 100")
    bad = {"batches": [{"arm": "canary", "requests": 3, "errors": 5}]}
    assert_error(c.post(f"{base}/rollouts/prod/outcomes", json=bad), 422, "InvalidRequest",
                 "invalid request: batches.0: Value error, errors (5) exceed requests (3)")
    assert_error(c.post(f"{base}/rollouts/prod/outcomes", json={"batches": [{"arm": "blue", "requests": 1}]}),
                 422, "InvalidRequest", "invalid request: batches.0.arm: Input should be 'stable' or 'canary'")
    assert_error(c.post(f"{base}/rollouts/prod/outcomes", json={"rollout_id": rid + 1000, "batches": HEALTHY}),
                 409, "RolloutNotActive",
                 f"rollout {rid + 1000} is not the current rollout of alias 'prod' ({rid})")
    assert snapshot(c, base) == before
    assert c.post(f"{base}/rollouts/prod/promote").status_code == 200
    after = snapshot(c, base)
    assert_error(c.post(f"{base}/rollouts/prod/rollback"), 409, "RolloutNotActive",
                 f"no active rollout on alias 'prod' (the latest, {rid}, is promoted)")
    assert snapshot(c, base) == after
