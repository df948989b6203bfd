"""What each Marathon version does, wherever the simulator behaves differently by version. Pure.

The simulator's own table, read from Marathon's source and changelog (``mesosphere/marathon``,
files at the tags named), and kept apart from the controller's client (``controller/dialect.py``)
on purpose: a wrong threshold on either side shows up as a disagreement in the tests instead of
being shared. An unknown or unparsable version behaves as the newest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["DEPRECATED_FEATURES", "DestField", "MarathonVersion", "parse_version"]

DestField = Literal["outputFile", "destPath"]

_NUMBER: Final = re.compile(r"\d+")

DEPRECATED_FEATURES: Final = {
    # DeprecatedFeatures.scala@v1.7.37 (api_heavy_events) and @v1.7.50 (proxy_events): both
    # soft-removed in 1.7.0 and hard-removed in 1.8.0, when Marathon refuses to start with them.
    "api_heavy_events": ((1, 7, 0), (1, 8, 0)),
    "proxy_events": ((1, 7, 50), (1, 8, 0)),
}
"""``--deprecated_features`` the simulator honours: the versions from which each exists and from
which Marathon refuses to start with it."""


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.10.26"`` → ``(1, 10, 26)``; ``"1.4.0-RC1"`` → ``(1, 4, 0)``; missing parts are 0,
    and a version with no number at all is the newest."""
    parts = [int(match.group()) for match in
             (_NUMBER.match(part) for part in text.split(".")[:3]) if match is not None]
    if not parts:
        return (999, 0, 0)
    major, minor, patch = [*parts, 0, 0][:3]
    return major, minor, patch


@dataclass(frozen=True, slots=True)
class MarathonVersion:
    """One Marathon version and the behaviour it selects in the simulator."""

    text: str
    number: tuple[int, int, int]

    @classmethod
    def of(cls, text: str) -> MarathonVersion:
        return cls(text=text, number=parse_version(text))

    def since(self, *version: int) -> bool:
        return self.number >= version

    # -- apps ----------------------------------------------------------------------------------

    @property
    def has_fetch(self) -> bool:
        """``fetch`` came in 0.15.0 (changelog.md "Changes from 0.14.0 to 0.15.0", Mesos fetcher
        cache; ``AppDefinition.json@v0.15.0``); before it an app has only ``uris``."""
        return self.since(0, 15)

    @property
    def has_patch(self) -> bool:
        """``PATCH /v2/apps/{id}``, PUT's ``partialUpdate`` and the ``Marathon-Deployment-Id``
        header came in 1.4.0 (``AppsResource.scala`` @v1.4.0-RC1 vs @v1.3.14; changelog.md 1.4.0);
        before, PUT was always a partial update."""
        return self.since(1, 4)

    @property
    def fetch_dest_field(self) -> DestField | None:
        """The JSON name of a fetch item's output file: none up to 1.1 (``Formats.scala@v1.1.7``),
        ``outputFile`` in 1.3.0-1.4.5 (``Formats.scala@v1.3.14``, ``@v1.4.5``), ``destPath`` from
        1.4.6 (commit 36e21f9a, MARATHON-7334; ``AppConversion.scala``)."""
        if self.since(1, 4, 6):
            return "destPath"
        return "outputFile" if self.since(1, 3) else None

    @property
    def shows_uris(self) -> bool:
        """Up to 1.4 an app is written with ``uris`` beside ``fetch`` and keeps the old network
        fields; a body with both lists is refused by Play's reads (400), and ``uris`` in an update
        become fetch items that all extract (``Formats.scala@v1.4.13``). 1.5 dropped them
        (changelog.md "Changes from 1.4.x to 1.5.0"; ``AppConversion.scala@v1.5.0``)."""
        return not self.since(1, 5)

    @property
    def drops_omitted_resources(self) -> bool:
        """Since 1.6.352 a partial update that omits ``executorResources`` (and, in 1.10,
        ``resourceLimits``) drops them: ``AppConversion.appUpdateRamlReader`` takes them from the
        update alone (commit 5d2b7970, in v1.6.352; docs/marathon.md §1.3)."""
        return self.since(1, 6, 352)

    @property
    def instance_ids(self) -> bool:
        """Task ids are written as 1.8 writes them, ``<app>.instance-<uuid>._app.1``
        (``core/task/Task.scala@v1.8.180``), from 1.8 on, and as the 1.x ``<app>.<uuid>`` of
        ``events.txt`` before (the release in between that changed them is not pinned down)."""
        return self.since(1, 8)

    @property
    def groups_have_pods(self) -> bool:
        """Groups are written with ``pods`` since 1.4 (``Formats.scala@v1.4.13`` ``GroupWrites``;
        ``@v1.3.14`` ``GroupFormat`` has none)."""
        return self.since(1, 4)

    # -- the event stream ----------------------------------------------------------------------

    @property
    def filters_events(self) -> bool:
        """``/v2/events?event_type=`` filters since 1.3.7 (``HttpEventStreamServlet.scala``
        @v1.3.7 vs @v1.3.6; event-bus.md "Starting from version 1.3.7")."""
        return self.since(1, 3, 7)

    @property
    def light_plans_opt_in(self) -> bool:
        """``?plan-format=light`` exists in 1.5.9-1.5.x and from 1.6.322 (commit 58fbba21
        "Introduce lightweight SSE flag (#5531)": ``HttpEventStreamServlet.scala`` @v1.5.9 and
        @v1.6.322, absent @v1.5.8 and @v1.6.0)."""
        return self.since(1, 6, 322) or (1, 5, 9) <= self.number < (1, 6)

    def light_plans(self, plan_format: list[str], heavy_events: bool) -> bool:
        """Whether a stream opened with these ``plan-format`` values gets deployment events
        without ``plan.original``/``plan.target`` (the root groups before and after).

        Before the flag every plan is heavy. 1.7 makes light the default unless
        ``--deprecated_features=api_heavy_events``, which brings back the opt-in
        (``HttpEventStreamServlet.scala@v1.7.236`` ``useLightWeightEvents``); 1.8 writes light
        plans only (``Formats.scala@v1.8.180`` ``DeploymentPlanWrites``; changelog.md 1.6.x
        "/v2/events" deprecation schedule).
        """
        if self.since(1, 8) or (self.since(1, 7) and not heavy_events):
            return True
        return self.light_plans_opt_in and "light" in plan_format

    @property
    def failure_reasons(self) -> bool:
        """``deployment_failed`` carries ``reason`` since 1.6.352 (``core/event/Events.scala``,
        commit 0177db13; docs/marathon.md §3.1)."""
        return self.since(1, 6, 352)

    def redirects_events(self, proxy_events: bool) -> bool:
        """A standby redirects ``/v2/events`` to the leader since 1.7.50 unless
        ``--deprecated_features=proxy_events``, and always since 1.8 (``LeaderProxyFilter.scala``
        @v1.7.50, commit ff0a492c "Deprecate event streaming proxying to the leader; replace
        with redirect (#6211)", and @v1.8.180); before, it proxies the stream like any request."""
        return self.since(1, 8) or (self.since(1, 7, 50) and not proxy_events)

    def check_deprecated_features(self, features: frozenset[str]) -> None:
        """Refuse what Marathon refuses to start with: a feature it does not know at this
        version, or one already hard-removed (``DeprecatedFeatures.scala``)."""
        for feature in sorted(features):
            span = DEPRECATED_FEATURES.get(feature)
            if span is None or not span[0] <= self.number < span[1]:
                raise ValueError(f"Marathon {self.text} has no deprecated feature {feature!r}")
