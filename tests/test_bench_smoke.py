"""The benchmark runs at a small size (a smoke test: its figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_runs_and_reports_every_figure():
    """`python -m bench` prints the documented JSON, and a no-op resync writes nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--apps", "200", "--creations", "3", "--events", "2000"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["opted_in"] == report["a_first_sync"]["writes"] == 20
    assert report["b_noop_resync"]["writes"] == 0
    assert report["c_event_to_write_ms"]["creations"] == 3
    assert report["d_sse_ingest"]["watcher_dispatched"] == 100
    assert report["e_sse_ingest_with_failures"]["failed_pulls_seen"] == 100
    assert report["peak_rss_mb"] > 0
