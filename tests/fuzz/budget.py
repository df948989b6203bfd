"""How long each fuzz target runs, and how many cases each one tried.

Two Hypothesis profiles: ``fuzz-quick``, a slice that runs inside ``make test`` (seconds, no
shrinking), and ``fuzz-full``, which ``make fuzz`` selects with ``FUZZ_PROFILE=full`` (over
100,000 cases in all, failures shrunk to a minimal example). Failing examples are kept in
Hypothesis's database under ``.hypothesis/`` and tried first on the next run; ``make fuzz``
also pins and prints the seed (``FUZZ_SEED``), so a run can be repeated exactly.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, Phase, settings

__all__ = ["CASES", "FULL", "count", "fuzz_settings"]

FULL = os.environ.get("FUZZ_PROFILE", "quick") == "full"

_COMMON = {
    "deadline": None,  # a shared 2-core machine: timing is not the property under test
    "print_blob": True,  # a failure prints @reproduce_failure(...) to replay it exactly
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                              HealthCheck.large_base_example, HealthCheck.filter_too_much],
}
settings.register_profile("fuzz-quick", phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          report_multiple_bugs=False, **_COMMON)
settings.register_profile("fuzz-full", **_COMMON)

CASES: Counter[str] = Counter()
"""Cases run per target in this session, for the summary ``conftest.py`` prints."""


def fuzz_settings(*, quick: int, full: int) -> settings:
    """The active profile with this target's share of examples."""
    profile = settings.get_profile("fuzz-full" if FULL else "fuzz-quick")
    return settings(profile, max_examples=full if FULL else quick)


def count(target: str) -> None:
    CASES[target] += 1
