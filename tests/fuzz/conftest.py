"""Prints how many cases each fuzz target ran, and how to repeat the run."""

from __future__ import annotations

import pytest

from tests.fuzz.budget import CASES, FULL


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    if not CASES:
        return
    write = terminalreporter.write_line
    terminalreporter.section(f"fuzz cases ({'full' if FULL else 'quick'} profile)")
    width = max(map(len, CASES))
    for target, n in sorted(CASES.items()):
        write(f"{target:<{width}}  {n:>9,}")
    write(f"{'total':<{width}}  {sum(CASES.values()):>9,}")
    seed = config.getoption("hypothesis_seed", default=None)
    if seed is not None:
        write(f"seed {seed}: repeat with `make fuzz FUZZ_SEED={seed}`")
    write("failing examples are saved under .hypothesis/ and tried first on the next run")
