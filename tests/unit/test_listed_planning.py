"""A list planned inline leaves the same traces with the triage as without it: the same apps
go to workers, the status book holds the same statuses and counts, the metrics and the report of
a one-shot pass say the same. Only the cost differs (``bench/``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from controller.appindex import AppIndex
from controller.applist import Triage
from controller.appreconciler import AppPolicy, AppReconciler
from controller.listedplanning import listed_planning
from controller.metrics import Metrics
from controller.model import BundleLocation
from controller.passreport import PassReport, format_report
from controller.registryapi.results import ImageCheck
from tests.unit.listed import LOCATIONS, PLANNER, cases, listed

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DENIED = ImageCheck(result="denied", detail="no pull scope")


class Bundles:
    def __init__(self, locations: dict[str, BundleLocation]) -> None:
        self._locations = locations

    async def location(self, registry: str) -> BundleLocation:
        if registry not in self._locations:
            raise RuntimeError("no bundle")
        return self._locations[registry]


class Images:
    """Image checks known for some images, to be asked for others."""

    def needs_asking(self, registry: str, image: str) -> bool:
        return image.startswith("nginx")

    def known(self, registry: str, image: str) -> ImageCheck | None:
        return DENIED if "@sha256:" in image else None


class Budget:
    in_flight = 0


class Gate:
    budget = Budget()


class Pass:
    """One reconciler, its index and metrics, planning lists inline with or without triage."""

    def __init__(self, where: str, *, images: bool, triage: bool) -> None:
        self.index = AppIndex(now=lambda: NOW, clock=lambda: 100.0)
        self.collectors = CollectorRegistry()
        self.report = PassReport()
        self.requeued: list[tuple[str, float]] = []
        self.triage = triage
        self.reconciler = AppReconciler(
            marathon=cast(Any, None), bundles=cast(Any, Bundles(LOCATIONS[where])),
            images=cast(Any, Images()) if images else None, gate=cast(Any, Gate()),
            index=self.index, observer=Metrics(self.collectors),
            policy=AppPolicy(planner=PLANNER), listeners=(self.report,))

    async def plan(self, apps: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
                   ) -> list[bool]:
        with monkeypatch.context() as patched:
            if not self.triage:
                patched.setattr(Triage, "settled", lambda self, app: None)
            planning = await listed_planning(
                self.reconciler,
                requeue=lambda app_id, after: self.requeued.append((app_id, after)))
            settled = [planning.settle(listed(app)) for app in apps]
            planning.finish()
        return settled

    def traces(self) -> dict[str, Any]:
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for metric in self.collectors.collect() for s in metric.samples
                   if not s.name.endswith("_created")}
        return {"statuses": dict(self.index.statuses), "counts": self.index.counts(),
                "registries": {a: self.index.registry_of(a) for a in self.index},
                "metrics": samples, "requeued": self.requeued,
                "report": format_report(self.report), "verbose": format_report(
                    self.report, verbose=True)}


def named(apps: list[tuple[dict[str, Any], str]], ids: list[str]) -> list[dict[str, Any]]:
    """One app per id (a list holds each once): the i-th app of every list is the same app
    (``ids[i]``, under its own id's team), another definition of it in each."""
    return [{**app, "id": f"{ids[i] if i < len(ids) else app['id']}/{i}"}
            for i, (app, _) in enumerate(apps)]


@settings(max_examples=100)
@given(first=st.lists(cases, max_size=12), then=st.lists(cases, max_size=12),
       where=st.sampled_from(sorted(LOCATIONS)), images=st.booleans())
def test_the_triage_leaves_the_traces_the_planner_leaves(first, then, where, images):
    """Two lists in a row (the second finds the statuses of the first): with and without the
    triage, the same apps settle, and statuses, counts, metrics and reports are the same."""
    async def both() -> None:
        with pytest.MonkeyPatch.context() as monkeypatch:
            fast, slow = (Pass(where, images=images, triage=t) for t in (True, False))
            ids = [app["id"] for app, _ in first]
            for apps in (named(first, ids), named(then, ids)):
                assert await fast.plan(apps, monkeypatch) == await slow.plan(apps, monkeypatch)
                assert fast.traces() == slow.traces()

    asyncio.run(both())
