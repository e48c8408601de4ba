"""The quality bench (``bench/quality.py``): its early stopping, its lr choice and seed statistics, the
table and the verdict sentence on made-up runs (fast), and ``--quick`` end to end into a temporary
folder (slow: it trains a real model in child processes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import quality, quality_report
from bench.quality_runs import EarlyStopper, Protocol


def test_early_stopper_keeps_the_best_and_counts_patience():
    s = EarlyStopper(patience=2)
    assert s.update(50, 0.80, 0.9) == (True, False)
    assert s.update(100, 0.85, 0.7) == (True, False)
    assert s.update(150, 0.85, 0.6) == (True, False)   # same accuracy, lower loss: a new best
    assert s.update(200, 0.85, 0.6) == (False, False)  # a full tie keeps the earlier step
    assert s.update(250, 0.84, 0.5) == (False, True)   # two in a row without a new best: stop
    assert s.best == {"step": 150, "accuracy": 0.85, "loss": 0.6}
    assert [h["step"] for h in s.history] == [50, 100, 150, 200, 250]


def test_protocol_cap_and_evaluation_interval():
    p = Protocol(batch_size=16, max_epochs=6)
    assert p.steps_per_epoch(1602) == 101 and p.cap(1602) == 606 and p.every(1602) == 50
    assert Protocol(eval_every=2, max_steps=8).cap(1602) == 8 and Protocol(eval_every=2).every(1602) == 2


def _run(method, lr, seed, acc, val_acc, val_loss=0.5, dataset="bbc-news"):
    return {"dataset": dataset, "method": method, "lr": lr, "seed": seed, "accuracy": acc, "macro_f1": acc - 0.01,
            "val_accuracy": val_acc, "val_loss": val_loss, "best_step": 100, "best_epoch": 1.0, "steps_run": 250,
            "stopped_early": True, "trainable_parameters": 1000, "total_parameters": 100_000, "size_bytes": 4096,
            "train_s": 60.0, "cpu_s": 61.0, "peak_rss_mb": 900.0, "test_examples": 445, "fit_examples": 1602,
            "val_examples": 178}


RUNS = [
    _run("full", 3e-5, 0, 0.95, 0.96), _run("full", 1e-4, 0, 0.97, 0.98),
    _run("full", 1e-4, 1, 0.98, 0.0), _run("full", 1e-4, 2, 0.96, 0.0),
    _run("full", 3e-5, 1, 0.10, 0.0),  # not the chosen lr: must not enter the mean
    _run("lora", 1e-3, 0, 0.96, 0.97, 0.4), _run("lora", 3e-3, 0, 0.90, 0.97, 0.3),  # tie on accuracy: lower loss
    _run("lora", 3e-3, 1, 0.92, 0.0), _run("lora", 3e-3, 2, 0.91, 0.0),
    _run("ia3", 3e-3, 0, 0.97, 0.97), _run("ia3", 3e-3, 1, 0.965, 0.0), _run("ia3", 3e-3, 2, 0.96, 0.0),
]


def test_summary_picks_the_lr_on_validation_and_averages_the_seeds():
    block = quality_report.summarise(RUNS, ["full", "lora", "ia3"], [0, 1, 2])["bbc-news"]
    assert block["full"]["lr"] == 1e-4 and block["lora"]["lr"] == 3e-3
    assert block["full"]["accuracy"] == pytest.approx(0.97) and block["full"]["accuracy_std"] == pytest.approx(0.01)
    assert block["lora"]["accuracy"] == pytest.approx(0.91)
    assert block["lora"]["gap_pts"] == pytest.approx(-6.0) and block["lora"]["gap_pct"] == pytest.approx(-600 / 97)
    assert block["ia3"]["gap_pct"] == pytest.approx(100 * (0.965 - 0.97) / 0.97)
    assert block["full"]["gap_pts"] is None


def test_table_and_verdict_say_what_the_numbers_say():
    block = quality_report.summarise(RUNS, ["full", "lora", "ia3"], [0, 1, 2])["bbc-news"]
    text = quality_report.table("bbc-news", block)
    assert "accuracy (mean ± std)" in text and "macro-F1 (mean ± std)" in text
    assert "| lora | 0.910 ± 0.010 | 0.900 ± 0.010 | -6.0 pts (-6.2 %) | 0.003 |" in text
    sentence = quality_report.verdict("bbc-news", block)
    assert sentence.startswith("On bbc-news, full fine-tuning reaches 0.970 ± 0.010 accuracy; the claim holds "
                               "for 1 of 2 adapter methods (ia3 (-0.5 %)) and fails for lora (-6.2 %).")
    assert "holds for every adapter" in quality_report.verdict("bbc-news", {k: block[k] for k in ("full", "ia3")})
    assert "cannot be tested" in quality_report.verdict("bbc-news", {"lora": block["lora"]})


ROW = re.compile(r"^\| (\w+) \| (\d\.\d{3}) ± (\d\.\d{3}|n/a) \| (\d\.\d{3}) ± (\d\.\d{3}|n/a) \| "
                 r"(—|[+-]\d+\.\d pts \([+-]\d+\.\d %\)) \|")


@pytest.mark.slow  # trains minilm-l6 in three child processes (about 40 s on 2 busy cores)
def test_quick_mode_trains_stops_restores_and_writes_the_table(tmp_path: Path):
    committed = {p: p.stat().st_mtime_ns for p in quality.common.RESULTS.glob("quality*")}
    assert quality.main(["--quick", "--out", str(tmp_path)]) == 0
    runs = [json.loads(line) for line in (tmp_path / quality.RUNS_FILE).read_text().splitlines()]
    assert sorted((r["method"], r["lr"]) for r in runs) == [("full", 1e-4), ("lora", 1e-3), ("lora", 3e-3)]
    for r in runs:
        assert r["best_step"] <= r["steps_run"] <= r["cap_steps"] == 8
        assert r["restored_val_accuracy"] == r["val_accuracy"]  # the best checkpoint is what gets scored
        assert r["restored_val_loss"] == pytest.approx(r["val_loss"], abs=1e-5)
        assert r["test_examples"] == 24 and r["val_examples"] == 24 and r["torch_threads"] == 1
    assert any(r["stopped_early"] and r["best_step"] < r["steps_run"] for r in runs), runs  # the restore mattered

    md = (tmp_path / "quality.md").read_text()
    assert quality_report.TABLE_HEADER in md and "## Protocol" in md and "patience 1 evaluations" in md
    rows = [m for line in md.splitlines() if (m := ROW.match(line))]
    assert [m[1] for m in rows] == ["full", "lora"]
    assert rows[0][6] == "—" and rows[1][6] != "—"
    assert re.search(r"^- On bbc-news, full fine-tuning reaches \d\.\d{3} ± n/a accuracy.*; the claim (holds|fails) "
                     r"for .*lora \([+-]\d+\.\d %\)", md, re.M), md
    data = json.loads((tmp_path / "quality.json").read_text())
    assert data["lr_grid"] == {"full": [1e-4], "lora": [1e-3, 3e-3]} and data["seeds"] == [0]
    assert set(data["summary"]["bbc-news"]) == {"full", "lora"} and data["verdicts"]["bbc-news"] in md

    assert quality.main(["--quick", "--out", str(tmp_path)]) == 0  # resumed: every run comes from the cache
    assert len((tmp_path / quality.RUNS_FILE).read_text().splitlines()) == len(runs)
    assert {p: p.stat().st_mtime_ns for p in quality.common.RESULTS.glob("quality*")} == committed
