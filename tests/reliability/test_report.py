"""The page ``make reliability`` writes from the suite's results."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.reliability.report import render

ROWS = [
    {"fault": "Marathon: a | b", "outcome": "passed", "seconds": 1.25, "writes": 6, "forced": 2,
     "delay_resets": 1, "note": ""},
    {"fault": "Storage: slow", "outcome": "skipped", "seconds": None, "writes": 0, "forced": 0,
     "delay_resets": 0, "note": "needs dm-delay"},
    {"fault": "Two controllers", "outcome": "failed", "seconds": None, "writes": 3,
     "forced": None, "delay_resets": None,
     "note": "not converged: file:///tmp/reliability-ab12_x/bundles/x.tar.gz"},
]


class TestRender:
    def page(self) -> str:
        return render(ROWS, started=datetime(2026, 1, 2, 3, 4, tzinfo=UTC), took=90,
                      fault_seconds=10, host="ci: Linux", exit_code=1)

    def test_one_table_row_per_scenario(self):
        """Every result becomes a row with its outcome, time, writes, forced writes and delay
        resets."""
        rows = [line for line in self.page().splitlines() if line.startswith("| ")][1:]
        assert rows == [
            "| Marathon: a \\| b | yes | 1.25 | 6 | 2 | 1 | - |",
            "| Storage: slow | skipped | - | 0 | 0 | 0 | needs dm-delay |",
            "| Two controllers | **no** | - | 3 | - | - | not converged: "
            "file://<tmp>/bundles/x.tar.gz |",
        ]

    def test_the_header_names_the_date_machine_and_counts(self):
        """The page says when, where, how long faults lasted and how many recovered."""
        page = self.page()
        assert "2026-01-02 03:04 UTC" in page
        assert "Machine: ci: Linux" in page
        assert "lasted 10 s" in page
        assert "1 recovered, 1 did not, 1 skipped" in page
