"""The rollout half of the registry client: start, step, pause, resume, promote, roll back, report.

Kept apart from ``client.py`` so that each file has one job; ``Hub`` inherits this mixin, so the
names stay ``hub.rollout_start(...)`` and so on. Needs ``_request`` and ``_adapter_path`` from ``Hub``.

>>> hub.rollout_start("acme/support", "prod", "1.1.0", 10)["weight"]   # doctest: +SKIP
10.0
"""

from __future__ import annotations

from adapterhub.errors import InvalidReferenceError
from adapterhub.registry.reference import Reference, as_reference, check_alias, check_version


class RolloutsMixin:
    """Rollouts of an alias (see ``registry/API.md``, "Rollouts"); mixed into ``Hub``, whose
    ``_request`` (auth, typed errors) and ``_adapter_path`` every method here goes through."""

    def rollout_start(
        self,
        ref: str | Reference,
        alias: str | None,
        canary_version: str,
        weight: float,
        schedule: list[float] | dict | None = None,
        *,
        min_duration_s: float | None = None,
        min_requests: int | None = None,
        thresholds: dict | None = None,
    ) -> dict:
        """Start moving ``alias`` from its current version to ``canary_version`` with ``weight`` % of keys.

        ``schedule`` (steps such as ``[5, 25, 50, 100]``, or the full ``{"steps", "min_duration_s",
        "min_requests"}``) lets the registry step up on its own while the canary stays healthy;
        ``thresholds`` (``p_value``, ``min_requests``, ``latency_tolerance``, ``quality_tolerance``)
        say when it rolls back. Returns the RolloutOut.

        >>> hub.rollout_start("acme/support", "prod", "1.1.0", 10, [5, 25, 50, 100])["state"]  # doctest: +SKIP
        'active'
        """
        r, alias = self._rollout_target(ref, alias)
        body: dict = {"alias": alias, "canary_version": check_version(canary_version), "weight": weight}
        if schedule is not None or min_duration_s is not None or min_requests is not None:
            sched = dict(schedule) if isinstance(schedule, dict) else {"steps": list(schedule or [])}
            if min_duration_s is not None:
                sched["min_duration_s"] = min_duration_s
            if min_requests is not None:
                sched["min_requests"] = min_requests
            body["schedule"] = sched
        if thresholds:
            body["thresholds"] = thresholds
        return self._request("POST", f"{self._adapter_path(r)}/rollouts", ref=r, json=body).json()

    def rollout_status(self, ref: str | Reference, alias: str | None = None) -> dict:
        """The alias's newest rollout (any state) with per-arm figures; the rules are applied first."""
        r, alias = self._rollout_target(ref, alias)
        return self._request("GET", f"{self._adapter_path(r)}/rollouts/{alias}", ref=r).json()

    def rollouts(self, ref: str | Reference, alias: str | None = None) -> list[dict]:
        """Every rollout of the adapter (of ``alias`` if given), newest first."""
        r = as_reference(ref)
        params = {"alias": check_alias(alias)} if alias else {}
        return self._request("GET", f"{self._adapter_path(r)}/rollouts", ref=r, params=params).json()

    def rollout_step(self, ref: str | Reference, alias: str | None, weight: float) -> dict:
        """Set the canary weight by hand; raising it keeps every key already on the canary there."""
        return self._rollout_action(ref, alias, "step", {"weight": weight})

    def rollout_pause(self, ref: str | Reference, alias: str | None = None, reason: str = "") -> dict:
        """Hold the split: no automatic step-up (a regression still rolls back)."""
        return self._rollout_action(ref, alias, "pause", {"reason": reason})

    def rollout_resume(self, ref: str | Reference, alias: str | None = None, reason: str = "") -> dict:
        return self._rollout_action(ref, alias, "resume", {"reason": reason})

    def rollout_promote(self, ref: str | Reference, alias: str | None = None, reason: str = "") -> dict:
        """Point the alias at the canary version and end the rollout."""
        return self._rollout_action(ref, alias, "promote", {"reason": reason})

    def rollout_rollback(self, ref: str | Reference, alias: str | None = None, reason: str = "") -> dict:
        """Send every key back to the stable version (weight 0) and end the rollout; the alias stays."""
        return self._rollout_action(ref, alias, "rollback", {"reason": reason})

    def report_outcomes(
        self,
        ref: str | Reference,
        outcomes: list[dict] | dict,
        alias: str | None = None,
        rollout_id: int | None = None,
    ) -> dict:
        """Add served-request counters per arm: ``{"arm", "requests", "errors", "latency_sum",
        "latency_sq_sum", "quality_sum"?, "quality_n"?}`` (latencies in seconds). The registry then
        applies its rules; the RolloutOut it returns says whether it stepped, promoted or rolled back.

        >>> hub.report_outcomes("acme/support:prod", [{"arm": "canary", "requests": 50, "errors": 1,
        ...                     "latency_sum": 4.1, "latency_sq_sum": 0.4}], rollout_id=7)  # doctest: +SKIP
        """
        batches = [outcomes] if isinstance(outcomes, dict) else list(outcomes)
        body: dict = {"batches": batches, **({"rollout_id": rollout_id} if rollout_id is not None else {})}
        return self._rollout_action(ref, alias, "outcomes", body)

    def _rollout_target(self, ref: str | Reference, alias: str | None) -> tuple[Reference, str]:
        r = as_reference(ref)
        if r.version:
            raise InvalidReferenceError(f"a rollout moves an alias; give {r.repo_id} with --alias, not a version")
        if alias and r.alias and alias != r.alias:
            raise InvalidReferenceError(f"{r} names alias {r.alias} but {alias} was given; give it once")
        alias = alias or r.alias
        if not alias:
            raise InvalidReferenceError(f"which alias does the rollout move? e.g. {r.repo_id}:prod or --alias prod")
        return r, check_alias(alias)

    def _rollout_action(self, ref: str | Reference, alias: str | None, action: str, body: dict) -> dict:
        r, alias = self._rollout_target(ref, alias)
        return self._request("POST", f"{self._adapter_path(r)}/rollouts/{alias}/{action}", ref=r, json=body).json()
