"""The benchmark runs at a small size (a smoke test: its figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIXES = [("all", 10), ("all", 0), ("all", 100), ("tenth", 10)]
"""The label mixes of the no-op passes (``bench.__main__.MIXES``)."""


def test_bench_runs_and_reports_every_figure(tmp_path):
    """`python -m bench` prints the documented JSON and writes the Markdown report; no-op
    passes write nothing."""
    results = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--sizes", "100,200", "--rss-sizes", "200",
         "--gzip-sizes", "200", "--first-sync-apps", "200", "--latency-apps", "200",
         "--creations", "3", "--events", "2000", "--ops-apps", "200", "--ops-clients", "4",
         "--ops-seconds", "1", "--repeat", "1", "--startup-repeat", "1", "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [(r["apps"], r["labelled"], r["opted_in"]) for r in report["noop"]] == [
        (apps, labelled, opted_in) for labelled, opted_in in MIXES for apps in (100, 200)]
    assert {(r["labelled"], r["opted_in"]) for r in report["growth"]["mixes"]} == set(MIXES)
    assert report["startup"]["reconcile_once_empty_s"] > 0
    assert [(r["apps"], r["opted_in"]) for r in report["daemon_rss"]] == [(200, 10), (200, 100)]
    assert all(r["peak_rss_mb"] > 0 for r in report["daemon_rss"])
    assert report["holders"]["decoded"]["apps"] == 200
    assert report["first_sync"]["first_sync"]["writes"] == 20
    assert report["latency"]["noop_resync"]["writes"] == 0
    latency = report["latency"]["event_to_write_ms"]
    assert latency["creations"] == 3
    assert len(latency["rounds_p99"]) == 3
    assert latency["p99"] == min(latency["rounds_p99"])
    assert report["sse_ingest"]["watcher_dispatched"] == 100
    assert report["sse_ingest_with_failures"]["failed_pulls_seen"] == 100
    ops = report["ops_load"]
    assert (ops["apps"], ops["clients"]) == (200, 4)
    assert ops["answers"].get("200", 0) > 0
    assert set(ops["answers"]) <= {"200", "503"}  # every answer a page, or "busy"
    assert ops["healthz_ms"]["probes"] > 0
    text = results.read_text()
    assert "## Goals (issue 20)" in text
    assert "## Goals (issue 12)" in text
    assert "## Memory holders" in text
    assert "## The ops port under load" in text


def test_growth_is_below_noise_within_the_spread_of_the_empty_runs():
    """A pass whose smaller cost is within the spread of the empty-Marathon runs has no growth
    to show; the growth table says so instead of dividing two noises."""
    from bench.__main__ import _growth
    from bench.render import _times

    rows = [{"apps": 100, "labelled": "all", "opted_in": 10, "above_empty_s": 0.03,
             "floor_s": 0.01, "empty_s": 0.40, "ratio": 3.0},
            {"apps": 200, "labelled": "all", "opted_in": 10, "above_empty_s": 0.3,
             "floor_s": 0.02, "empty_s": 0.45, "ratio": 15.0}]
    growth = _growth(rows, 100, 200)
    assert growth == [{"labelled": "all", "opted_in": 10, "pass_growth": None,
                       "floor_growth": 2.0, "to_floor": [3.0, 15.0]}]
    assert _times(growth[0]["pass_growth"]) == "below noise"
    rows[0]["above_empty_s"] = 0.06  # above the empty runs' spread (0.05 s): a growth
    assert _growth(rows, 100, 200)[0]["pass_growth"] == 5.0
