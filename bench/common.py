"""What every benchmark shares: interleaved timing, peak RSS in a fresh process, machine facts, results.

Timings are medians of round-robin rounds: each round runs every contender once, in an order that
rotates from round to round, so slow drift of a shared machine (other jobs, thermal state) lands on
all contenders alike and the ratios read inside one run stay meaningful.

>>> samples = time_interleaved({"a": lambda: None, "b": lambda: None}, repeats=3)
>>> sorted(samples), len(samples["a"])
(['a', 'b'], 3)
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from adapterhub.format import write_text_atomic

THREADS = 2
RESULTS = Path(__file__).resolve().parent / "results"


def setup_torch() -> None:
    """Pin the thread count the published numbers use (the figures in the issue are for 2 threads)."""
    import torch

    torch.set_num_threads(THREADS)


def time_interleaved(
    fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each ``fns`` entry: ``warmup`` untimed rounds, then ``repeats`` rotated rounds."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of ``numerator[i] / denominator[i]`` for two ``time_interleaved`` columns:
    both were timed in the same rotated round, so a slow spell on a shared machine moves both and
    cancels (medians of each column drift apart)."""
    return median([a / b for a, b in zip(numerator, denominator, strict=True)])


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (a baseline to read ``peak_rss_mb`` against)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


PROTOCOL = "@@bench "  # prefix of the lines a stepping child writes to its parent; other output is ignored


def _read_reply(proc: subprocess.Popen, log: IO[bytes], what: str) -> str:
    for line in proc.stdout:
        if line.startswith(PROTOCOL):
            return line[len(PROTOCOL):].strip()
    proc.wait()
    log.seek(0)
    tail = log.read().decode(errors="replace")[-3000:]
    raise RuntimeError(f"{' '.join(proc.args[2:])} exited {proc.returncode} before sending {what}:\n{tail}")


def run_lockstep(commands: Mapping[str, list[str]], repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Time steps of several ``python -m ...`` children in round-robin turns, like ``time_interleaved``,
    while each lives in its own process so that its peak RSS is its own. A child is written with
    ``serve_steps``; each returns its final report with ``samples`` (seconds per timed step) added."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    logs = {name: tempfile.TemporaryFile() for name in commands}  # a child's stderr, shown if it dies
    procs = {
        name: subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=logs[name], text=True, env=env)
        for name, args in commands.items()
    }

    def ask(name: str, request: str, what: str) -> str:
        if request:
            procs[name].stdin.write(request + "\n")
            procs[name].stdin.flush()
        return _read_reply(procs[name], logs[name], what)

    try:
        for name in procs:
            ask(name, "", "ready")

        steps: dict[str, list[float]] = {name: [] for name in procs}
        turns = {name: (lambda n=name: steps[n].append(float(ask(n, "step", "a step time")))) for name in procs}
        time_interleaved(turns, repeats, warmup)
        reports = {}
        for name, proc in procs.items():
            reports[name] = {**json.loads(ask(name, "report", "its report")), "samples": steps[name][warmup:]}
            proc.stdin.close()
            proc.wait()
        return reports
    finally:
        for name, proc in procs.items():
            if proc.poll() is None:
                proc.kill()
            logs[name].close()


def serve_steps(step: Callable[[], object], report: Callable[[], dict]) -> None:
    """The child side of ``run_lockstep``: run ``step`` on each request, then send ``report()``."""
    print(PROTOCOL + "ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "step":
            start = time.perf_counter()
            step()
            print(f"{PROTOCOL}{time.perf_counter() - start}", flush=True)
        elif line.strip() == "report":
            print(PROTOCOL + json.dumps(report()), flush=True)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict:
    import peft
    import torch
    import transformers

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "adapterhub_revision": _git_revision(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_results(name: str, data: dict) -> Path:
    return write_text_atomic(RESULTS / f"{name}.json", json.dumps(data, indent=2) + "\n")
