"""Sticky assignment and the rollout rules, as pure functions (no server)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from adapterhub.registry.server.canary import ArmStats, arm_for, bucket, error_p_value, evaluate, next_step

KEYS = [f"tenant-{i}" for i in range(20_000)]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@dataclass
class FakeRollout:
    state: str = "active"
    weight: float = 5.0
    schedule: dict = field(default_factory=lambda: {"steps": [5, 25, 50, 100], "min_duration_s": 60,
                                                    "min_requests": 100})
    thresholds: dict = field(default_factory=dict)
    step_started_at: datetime = NOW - timedelta(seconds=120)
    step_base_requests: int = 0


def canary_share(rollout_id: int, weight: float) -> float:
    return sum(arm_for(rollout_id, weight, k) == "canary" for k in KEYS) / len(KEYS)


def test_bucket_is_the_documented_hash():
    expected = int(hashlib.sha256(b"7:tenant-42").hexdigest()[:8], 16) % 10000
    assert bucket(7, "tenant-42") == expected
    assert arm_for(7, expected / 100 + 0.01, "tenant-42") == "canary"
    assert arm_for(7, expected / 100, "tenant-42") == "stable"


@pytest.mark.parametrize("weight", [1, 10, 25, 50, 90])
def test_assignment_matches_the_weight_within_two_percent(weight):
    assert abs(100 * canary_share(3, weight) - weight) <= 2


def test_assignment_edges_and_no_key():
    assert canary_share(3, 0) == 0 and canary_share(3, 100) == 1
    assert arm_for(3, 100, None) == "stable"


def test_assignment_is_monotone_when_the_weight_grows():
    on = {w: {k for k in KEYS if arm_for(11, w, k) == "canary"} for w in (5, 10, 25, 50, 100)}
    assert on[5] <= on[10] <= on[25] <= on[50] <= on[100]
    assert on[10] and all(arm_for(11, 50, k) == "canary" for k in on[10])


def test_two_rollouts_hash_independently():
    a = {k for k in KEYS if arm_for(1, 50, k) == "canary"}
    b = {k for k in KEYS if arm_for(2, 50, k) == "canary"}
    assert abs(len(a & b) / len(KEYS) - 0.25) <= 0.02  # independent halves overlap on a quarter


def test_error_p_value_is_a_one_sided_two_proportion_test():
    bad, good = ArmStats(requests=500, errors=60), ArmStats(requests=500, errors=5)
    assert error_p_value(bad, good) < 1e-10
    assert error_p_value(good, bad) > 0.99  # a better canary is no evidence of harm
    assert error_p_value(good, good) == pytest.approx(0.5)
    assert error_p_value(ArmStats(requests=10), ArmStats(requests=10)) == 1.0
    assert error_p_value(ArmStats(), good) is None
    # z = (0.10 - 0.05) / sqrt(0.075 * 0.925 * (2/1000)) = 4.245 -> p = 1 - Phi(z) = 1.094e-5
    assert error_p_value(ArmStats(requests=1000, errors=100), ArmStats(requests=1000, errors=50)) == pytest.approx(
        1.094e-5, rel=1e-3)


def test_error_regression_rolls_back_only_with_the_minimum_sample():
    stable, bad = ArmStats(requests=1000, errors=10), ArmStats(requests=99, errors=50)
    assert evaluate(FakeRollout(), {"stable": stable, "canary": bad}, NOW).action is None
    d = evaluate(FakeRollout(), {"stable": stable, "canary": ArmStats(requests=100, errors=50)}, NOW)
    assert (d.action, d.weight) == ("rollback", 0.0)
    assert d.reason.startswith("canary error rate 50.00% is worse than stable 1.00% (one-sided two-proportion z-test p=")


def test_latency_and_quality_regressions_roll_back():
    stable = ArmStats(requests=200, latency_sum=20.0, quality_sum=180.0, quality_n=200)
    slow = ArmStats(requests=200, latency_sum=25.0, quality_sum=180.0, quality_n=200)
    d = evaluate(FakeRollout(), {"stable": stable, "canary": slow}, NOW)
    assert d.action == "rollback" and d.reason == (
        "canary mean latency 0.125s exceeds stable 0.1s by more than 20%")
    worse = ArmStats(requests=200, latency_sum=20.0, quality_sum=160.0, quality_n=200)
    d = evaluate(FakeRollout(), {"stable": stable, "canary": worse}, NOW)
    assert d.action == "rollback" and d.reason == "canary mean quality 0.8 is below stable 0.9 by more than 5%"
    fine = ArmStats(requests=200, latency_sum=22.0, quality_sum=176.0, quality_n=200)
    assert evaluate(FakeRollout(), {"stable": stable, "canary": fine}, NOW).action == "step"


def test_healthy_rollout_steps_after_duration_and_requests_and_promotes_at_100():
    stable, healthy = ArmStats(requests=1000, errors=10), ArmStats(requests=150, errors=1)
    arms = {"stable": stable, "canary": healthy}
    d = evaluate(FakeRollout(), arms, NOW)
    assert (d.action, d.weight) == ("step", 25)
    assert d.reason == "healthy at 5% for 120s and 150 canary requests (needs 60s and 100)"
    assert evaluate(FakeRollout(step_started_at=NOW - timedelta(seconds=30)), arms, NOW).action is None
    assert evaluate(FakeRollout(step_base_requests=100), arms, NOW).action is None
    assert evaluate(FakeRollout(weight=50), arms, NOW).action == "promote"
    assert evaluate(FakeRollout(state="paused"), arms, NOW).action is None
    assert evaluate(FakeRollout(schedule={}), arms, NOW).action is None
    assert evaluate(FakeRollout(state="promoted"), arms, NOW).action is None


def test_paused_rollout_still_rolls_back_on_a_regression():
    arms = {"stable": ArmStats(requests=1000, errors=10), "canary": ArmStats(requests=200, errors=100)}
    assert evaluate(FakeRollout(state="paused"), arms, NOW).action == "rollback"
    assert evaluate(FakeRollout(state="rolled_back"), arms, NOW).action is None


def test_next_step():
    assert next_step([5, 25, 50, 100], 10) == 25
    assert next_step([5, 25, 50, 100], 100) is None
    assert next_step([], 0) is None
