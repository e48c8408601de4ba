"""The load test of ``bench/load.py``, short: 8 clients for 5 s mixing search, pull, push and
resolve against a real server. No request may fail, no traceback may reach the server's log, and
after a restart every acknowledged push pulls byte-identical. (The full run, 50 clients for 2
minutes on SQLite and on PostgreSQL, is ``make bench-load``; here SQLite only, to keep ``make test``
short: the kill test and the PostgreSQL restart test already drive PostgreSQL with concurrent writers.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import MIX, run_load

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module


def test_load_smoke_loses_nothing(tmp_path: Path):
    report = run_load("sqlite", clients=8, duration=5.0, size_kb=16, work=tmp_path)
    assert report["errors"] == []
    assert report["lost"] == 0 and report["lost_detail"] == []
    assert report["unacknowledged_visible"] == []
    assert report["pushes_acked"] > 0 and report["verified"] == report["pushes_acked"] + report["seeded"]
    assert all(report["ops"][op]["count"] > 0 for op in MIX), report["ops"]
