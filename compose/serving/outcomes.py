"""Per-arm outcomes of rollout traffic, counted here and sent to the registry in the background.

Best-effort by design: what the registry does with them (automatic rollout steps and rollbacks)
must never slow or fail a request, so a report that cannot be sent is logged and dropped.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from adapterhub.compose.serving.resolver import Resolved

log = logging.getLogger("adapterhub.serve")


@dataclass
class ArmCounts:
    """One arm's counters since the last report.

    Named as the registry's ``ArmStats`` and ``OutcomeBatch`` fields, so a report is these fields
    and its arm as they are, with nothing to translate (the engine may not import the server).
    """

    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    latency_sq_sum: float = 0.0

    def add(self, ok: bool, seconds: float | None) -> None:
        self.requests += 1
        self.errors += 0 if ok else 1
        if seconds is not None:
            self.latency_sum += seconds
            self.latency_sq_sum += seconds * seconds


class OutcomeReporter:
    """Counts rows by (adapter, alias, rollout, arm); a thread flushes them every ``interval`` seconds."""

    def __init__(self, hub: Any, interval: float):
        self.hub, self.interval = hub, interval
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int, str], ArmCounts] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="adapterhub-outcomes", daemon=True)
        self._thread.start()

    def record(self, resolved: Resolved, ok: bool, seconds: float | None) -> None:
        if resolved.rollout_id is None or resolved.alias is None:
            return
        key = (f"{resolved.namespace}/{resolved.name}", resolved.alias, resolved.rollout_id, resolved.arm)
        with self._lock:
            self._counts.setdefault(key, ArmCounts()).add(ok, seconds)

    def flush(self) -> int:
        """Send what was counted since the last flush; returns how many batches the registry took."""
        with self._lock:
            pending, self._counts = self._counts, {}
        grouped: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
        for (repo, alias, rollout_id, arm), counts in pending.items():
            grouped[(repo, alias, rollout_id)].append({"arm": arm, **asdict(counts)})
        sent = 0
        for (repo, alias, rollout_id), batches in grouped.items():
            try:
                self.hub.report_outcomes(repo, batches, alias=alias, rollout_id=rollout_id)
                sent += len(batches)
            except Exception as exc:  # best-effort: a registry hiccup never affects serving
                log.warning("could not report outcomes for %s:%s: %s", repo, alias, exc)
        return sent

    def stop(self) -> None:
        """End the periodic flushes; the owner sends the last counts with `flush` once rows are done."""
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            self.flush()


__all__ = ["ArmCounts", "OutcomeReporter"]
