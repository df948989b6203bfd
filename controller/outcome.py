"""What converging one app did: the reconciler's answer, read by the report, the remediator
and the status book."""

from __future__ import annotations

from typing import Literal

import msgspec

from controller.model import AppId
from controller.plan import AppPlan
from controller.registryapi.results import ImageCheck

__all__ = ["Action", "AppOutcome"]

Action = Literal["updated", "would_update", "unchanged", "gone", "deferred", "locked", "stuck",
                 "withheld"]


class AppOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What converging one app did (``AppReconciler.converge``)."""

    app_id: AppId
    action: Action
    plan: AppPlan | None = None
    deployment_id: str | None = None
    requeue_after: float | None = None
    """Come back then even if nothing happens (the bundle URI expires)."""
    forced: bool = False
    """The write was forced over a stuck deployment (a rescue)."""
    locked_by: tuple[str, ...] = ()
    """``locked``, ``stuck``: the deployments that lock the app."""
    version: str | None = None
    """``locked``, ``stuck``: the app's version then (the definition they roll out)."""
    detail: str = ""
    """``stuck``, ``withheld``: why nothing was written, and what to do."""
    image_check: ImageCheck | None = None
    """What the registry said of the app's image with the credential it is given, if asked."""
