"""Serving metrics: counters and a latency histogram per (adapter, arm), in Prometheus text format.

What ``GET /metrics`` of ``adapterhub serve-model`` shows: requests per adapter, arm and status,
request latency, resolve-cache and adapter-LRU hits, micro-batch sizes, adapters in memory.

>>> m = Metrics()
>>> m.observe("acme/support:prod", "canary", "ok", 0.02)
>>> 'adapterhub_requests_total{adapter="acme/support:prod",arm="canary",status="ok"} 1' in m.render(1, 1024)
True
"""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Counters and a latency histogram per (adapter, arm), rendered in Prometheus text format."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)  # (adapter, arm, status)
        self.latency_buckets: dict[tuple[str, str], list[int]] = {}
        self.latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.latency_count: dict[tuple[str, str], int] = defaultdict(int)
        self.cache: dict[tuple[str, str], int] = defaultdict(int)  # (cache, result)
        self.batches = 0
        self.batch_rows = 0
        self.loads: dict[str, int] = defaultdict(int)  # exact version -> times loaded into this process

    def observe(self, adapter: str, arm: str, status: str, seconds: float | None) -> None:
        with self._lock:
            self.requests[(adapter, arm, status)] += 1
            if seconds is not None:
                key = (adapter, arm)
                buckets = self.latency_buckets.setdefault(key, [0] * len(LATENCY_BUCKETS))
                for i, le in enumerate(LATENCY_BUCKETS):
                    if seconds <= le:
                        buckets[i] += 1
                self.latency_sum[key] += seconds
                self.latency_count[key] += 1

    def cache_event(self, cache: str, hit: bool) -> None:
        with self._lock:
            self.cache[(cache, "hit" if hit else "miss")] += 1

    def adapter_loaded(self, exact: str) -> None:
        with self._lock:
            self.loads[exact] += 1

    def batch(self, rows: int) -> None:
        with self._lock:
            self.batches += 1
            self.batch_rows += rows

    def render(self, loaded: int, loaded_bytes: int) -> str:
        def lbl(**kw) -> str:
            return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in kw.items()) + "}"

        out = ["# HELP adapterhub_requests_total Requests served, per adapter, arm and status.",
               "# TYPE adapterhub_requests_total counter"]
        with self._lock:
            for (adapter, arm, status), n in sorted(self.requests.items()):
                out.append(f"adapterhub_requests_total{lbl(adapter=adapter, arm=arm, status=status)} {n}")
            out += ["# HELP adapterhub_request_latency_seconds Request latency, per adapter and arm.",
                    "# TYPE adapterhub_request_latency_seconds histogram"]
            for (adapter, arm), buckets in sorted(self.latency_buckets.items()):
                for le, n in zip(LATENCY_BUCKETS, buckets, strict=True):
                    out.append(f"adapterhub_request_latency_seconds_bucket{lbl(adapter=adapter, arm=arm, le=le)} {n}")
                count = self.latency_count[(adapter, arm)]
                out.append(f"adapterhub_request_latency_seconds_bucket{lbl(adapter=adapter, arm=arm, le='+Inf')} {count}")
                out.append(f"adapterhub_request_latency_seconds_sum{lbl(adapter=adapter, arm=arm)} "
                           f"{self.latency_sum[(adapter, arm)]:.6f}")
                out.append(f"adapterhub_request_latency_seconds_count{lbl(adapter=adapter, arm=arm)} {count}")
            out += ["# HELP adapterhub_cache_requests_total Cache lookups (resolve cache and adapter LRU).",
                    "# TYPE adapterhub_cache_requests_total counter"]
            for (cache, result), n in sorted(self.cache.items()):
                out.append(f"adapterhub_cache_requests_total{lbl(cache=cache, result=result)} {n}")
            out += ["# HELP adapterhub_batches_total Micro-batches run.", "# TYPE adapterhub_batches_total counter",
                    f"adapterhub_batches_total {self.batches}",
                    "# HELP adapterhub_batch_rows_total Rows over all micro-batches.",
                    "# TYPE adapterhub_batch_rows_total counter", f"adapterhub_batch_rows_total {self.batch_rows}"]
            out += ["# HELP adapterhub_adapter_loads_total Adapter versions loaded into memory (a reload after "
                    "an eviction counts again).", "# TYPE adapterhub_adapter_loads_total counter"]
            for exact, n in sorted(self.loads.items()):
                out.append(f"adapterhub_adapter_loads_total{lbl(adapter=exact)} {n}")
        out += ["# HELP adapterhub_adapters_loaded Adapters in memory.", "# TYPE adapterhub_adapters_loaded gauge",
                f"adapterhub_adapters_loaded {loaded}",
                "# HELP adapterhub_adapter_bytes Bytes of adapter weights in memory.",
                "# TYPE adapterhub_adapter_bytes gauge", f"adapterhub_adapter_bytes {loaded_bytes}"]
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


__all__ = ["LATENCY_BUCKETS", "Metrics"]
