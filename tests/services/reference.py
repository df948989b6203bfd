"""Marathon's own schemas and examples, checked in under ``reference/marathon``."""

from __future__ import annotations

from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "reference" / "marathon"
"""Marathon's own schemas and examples (Apache-2.0, copied verbatim; see its README)."""
