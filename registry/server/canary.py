"""Canary arithmetic, free of the database: sticky assignment and the rules that move a rollout.

Assignment is sticky and monotone: a key hashes to one of 10,000 buckets per rollout and is on
the canary iff its bucket is below ``weight × 100``, so raising the weight only ever adds keys to
the canary, and two rollouts (different ids) split the same keys independently.

>>> arm_for(7, 10.0, "tenant-42") in ("stable", "canary")
True
>>> evaluate(rollout, {"stable": ArmStats(requests=500, errors=5), "canary": ArmStats(requests=500, errors=60)},
...          now).action                                                          # doctest: +SKIP
'rollback'
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

BUCKETS = 10_000
ARMS = ("stable", "canary")
OPEN_STATES = ("active", "paused")
DEFAULT_SCHEDULE = {"steps": [], "min_duration_s": 600.0, "min_requests": 100}
DEFAULT_THRESHOLDS = {"p_value": 0.01, "min_requests": 100, "latency_tolerance": 0.2, "quality_tolerance": 0.05}


def bucket(rollout_id: int, key: str) -> int:
    """The key's bucket in ``[0, 10000)`` for this rollout."""
    return int(hashlib.sha256(f"{rollout_id}:{key}".encode()).hexdigest()[:8], 16) % BUCKETS


def arm_for(rollout_id: int, weight: float, key: str | None) -> str:
    """``"canary"`` iff the key's bucket is below ``weight × 100``; no key -> ``"stable"``."""
    if key is None:
        return "stable"
    return "canary" if bucket(rollout_id, key) < weight * 100 else "stable"


@dataclass(frozen=True)
class ArmStats:
    """One arm's aggregated outcomes, with the figures the rules and ``status`` use."""

    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    latency_sq_sum: float = 0.0
    quality_sum: float = 0.0
    quality_n: int = 0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def latency_mean(self) -> float | None:
        return self.latency_sum / self.requests if self.requests else None

    @property
    def latency_std(self) -> float | None:
        if self.requests < 2:
            return None
        var = (self.latency_sq_sum - self.latency_sum**2 / self.requests) / (self.requests - 1)
        return math.sqrt(max(var, 0.0))

    @property
    def quality_mean(self) -> float | None:
        return self.quality_sum / self.quality_n if self.quality_n else None


def error_p_value(canary: ArmStats, stable: ArmStats) -> float | None:
    """One-sided two-proportion z-test of "the canary errs more often than stable" (pooled variance).

    None when an arm has no requests; 1.0 when neither arm varies (no errors, or only errors).
    """
    n1, n2 = canary.requests, stable.requests
    if not n1 or not n2:
        return None
    pooled = (canary.errors + stable.errors) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (canary.errors / n1 - stable.errors / n2) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def next_step(steps: list[float], weight: float) -> float | None:
    """The first schedule step above ``weight`` (None when the schedule is done)."""
    return next((s for s in steps if s > weight), None)


@dataclass(frozen=True)
class Decision:
    """What the rules want: nothing, ``rollback``, ``step`` (to ``weight``) or ``promote``."""

    action: str | None = None
    weight: float | None = None
    reason: str = ""


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _errors(c: ArmStats, s: ArmStats, t: dict) -> str | None:
    p = error_p_value(c, s)
    if p is None or p >= t["p_value"]:
        return None
    return (f"canary error rate {_pct(c.error_rate)} is worse than stable {_pct(s.error_rate)} "
            f"(one-sided two-proportion z-test p={p:.2g} < {t['p_value']})")


def _latency(c: ArmStats, s: ArmStats, t: dict) -> str | None:
    cm, sm = c.latency_mean, s.latency_mean
    if cm is None or not sm or cm <= sm * (1 + t["latency_tolerance"]):
        return None
    return (f"canary mean latency {cm:.4g}s exceeds stable {sm:.4g}s by more than "
            f"{100 * t['latency_tolerance']:.0f}%")


def _quality(c: ArmStats, s: ArmStats, t: dict) -> str | None:
    if min(c.quality_n, s.quality_n) < t["min_requests"]:
        return None
    cm, sm = c.quality_mean, s.quality_mean
    if cm >= sm - t["quality_tolerance"] * abs(sm):
        return None
    return (f"canary mean quality {cm:.4g} is below stable {sm:.4g} by more than "
            f"{100 * t['quality_tolerance']:.0f}%")


# Regression rules, checked in order; each needs ``min_requests`` on both arms (quality: scored ones).
REGRESSIONS: list[tuple[str, Callable[[ArmStats, ArmStats, dict], str | None]]] = [
    ("errors", _errors),
    ("latency", _latency),
    ("quality", _quality),
]


def regression(stats: dict[str, ArmStats], thresholds: dict) -> str | None:
    """The reason the canary is worse than stable, or None while it is not (or evidence is short)."""
    t = {**DEFAULT_THRESHOLDS, **thresholds}
    c, s = stats["canary"], stats["stable"]
    if min(c.requests, s.requests) < t["min_requests"]:
        return None
    for _name, rule in REGRESSIONS:
        if reason := rule(c, s, t):
            return reason
    return None


def evaluate(rollout, stats: dict[str, ArmStats], now: datetime) -> Decision:
    """The rules, on a rollout row (``state``, ``weight``, ``schedule``, ``thresholds``,
    ``step_started_at``, ``step_base_requests``) and its arms' figures.

    Open rollouts (active or paused) roll back on a regression; an active one steps up to the
    next schedule step once the current step has lasted ``min_duration_s`` and the canary served
    ``min_requests`` in it; the step that reaches 100 promotes.
    """
    if rollout.state not in OPEN_STATES:
        return Decision()
    if reason := regression(stats, rollout.thresholds or {}):
        return Decision("rollback", 0.0, reason)
    schedule = {**DEFAULT_SCHEDULE, **(rollout.schedule or {})}
    target = next_step(schedule["steps"], rollout.weight)
    if rollout.state != "active" or target is None:
        return Decision()
    lasted = (now - rollout.step_started_at).total_seconds()
    served = stats["canary"].requests - rollout.step_base_requests
    if lasted < schedule["min_duration_s"] or served < schedule["min_requests"]:
        return Decision()
    why = (f"healthy at {rollout.weight:g}% for {lasted:.0f}s and {served} canary requests "
           f"(needs {schedule['min_duration_s']:g}s and {schedule['min_requests']})")
    if target >= 100:
        return Decision("promote", 100.0, why)
    return Decision("step", target, why)
