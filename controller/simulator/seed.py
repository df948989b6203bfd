"""Deterministic apps at cluster scale, for the demo, benchmarks and tests."""

from __future__ import annotations

from typing import Final

from controller.simulator.state import MarathonState
from controller.simulator.wire import Json

_PUBLIC_IMAGES: Final = ("nginx:1.25", "python:3.12-slim", "redis:7.2", "busybox:1.36",
                         "postgres:16")


def seed_apps(
    state: MarathonState,
    count: int,
    *,
    opted_in_fraction: float = 0.1,
    registry: str = "registry.example.com:5000",
    label: str = "pullsecret.enabled",
) -> list[str]:
    """Load ``count`` deterministic Docker apps across 20 teams; returns their ids.

    Opted-in apps (``label: "true"``, evenly spread) pull from ``registry``; the others use
    public images. Every 7th app already fetches an artifact of its own.
    """
    apps: list[Json] = []
    for i in range(count):
        team = f"team-{i % 20:02d}"
        opted_in = int((i + 1) * opted_in_fraction) > int(i * opted_in_fraction)
        image = (f"{registry}/{team}/app-{i:05d}:1.0" if opted_in
                 else _PUBLIC_IMAGES[i % len(_PUBLIC_IMAGES)])
        app: Json = {
            "id": f"/{team}/app-{i:05d}", "instances": 1 + i % 3, "cpus": 0.1, "mem": 64,
            "container": {"type": "DOCKER", "docker": {"image": image}},
            "labels": {"team": team, **({label: "true"} if opted_in else {})},
        }
        if i % 7 == 0:
            app["fetch"] = [{"uri": f"https://artifacts.example.com/{team}/config-{i}.tgz"}]
        apps.append(app)
    state.load_apps(apps)
    return [app["id"] for app in apps]
