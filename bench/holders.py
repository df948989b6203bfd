"""Where the daemon's memory goes in a relist: ``tracemalloc`` snapshots, the top holders.

``python -m bench.holders --config PATH`` runs one term's first relist against the Marathon the
config names (in its own process, so nothing else is traced) and prints JSON: the traced peak,
what is held once the list is decoded (the list itself), and what outlives the relist.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from controller.config import load_settings
from controller.logs import configure
from controller.manager import make_term
from controller.metrics import Metrics
from controller.wiring import build

_TOP = 8


def _top(snapshot: tracemalloc.Snapshot, baseline: tracemalloc.Snapshot) -> list[dict[str, Any]]:
    """The lines that hold the most memory allocated since ``baseline``."""
    stats = snapshot.compare_to(baseline, "lineno")
    return [{"where": f"{Path(s.traceback[0].filename).name}:{s.traceback[0].lineno}",
             "mb": round(s.size_diff / 1e6, 2), "blocks": s.count_diff}
            for s in sorted(stats, key=lambda s: -s.size_diff)[:_TOP]]


async def relist(config: Path) -> dict[str, Any]:
    settings = load_settings(config, os.environ)
    async with build(settings, os.environ) as parts:
        term = make_term(parts, Metrics(CollectorRegistry()))
        marathon = parts.marathon
        list_apps = marathon.list_apps
        decoded: dict[str, Any] = {}
        tracemalloc.start()
        baseline = tracemalloc.take_snapshot()

        async def snapshot_after_list(label_selector: str | None = None) -> Any:
            apps = await list_apps(label_selector)
            current, peak = tracemalloc.get_traced_memory()
            decoded.update(apps=len(apps), held_mb=round(current / 1e6, 1),
                           peak_mb=round(peak / 1e6, 1),
                           top=_top(tracemalloc.take_snapshot(), baseline))
            return apps

        marathon.list_apps = snapshot_after_list  # type: ignore[method-assign]
        await term.source.relist()
        current, peak = tracemalloc.get_traced_memory()
        after = _top(tracemalloc.take_snapshot(), baseline)
        tracemalloc.stop()
        return {"traced_peak_mb": round(peak / 1e6, 1), "decoded": decoded,
                "after_relist": {"held_mb": round(current / 1e6, 1), "top": after,
                                 "queued": term.apps.queue.depth}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.holders", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    configure("warning", "json")
    print(json.dumps(asyncio.run(relist(parser.parse_args().config))))
