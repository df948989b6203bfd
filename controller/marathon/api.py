"""The Marathon port the engine uses, and what the client reports of each request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from controller.applist import ListedApp
from controller.dialect import Dialect
from controller.model import AppId, RawApp, RawAppUpdate, RawDeployment

__all__ = ["MarathonAPI", "RequestObserver"]


class MarathonAPI(Protocol):
    """The Marathon operations the controller needs."""

    async def list_apps(self, label_selector: str | None = None) -> list[ListedApp]:
        """Every app (matching the selector), cut to the fields planning reads."""
        ...

    async def get_app(self, app_id: AppId) -> RawApp: ...

    async def update_app(self, app_id: AppId, body: RawAppUpdate, *, force: bool = False
                         ) -> str | None: ...

    async def dialect(self) -> Dialect:
        """How this Marathon writes an app (its version's method and body)."""
        ...

    async def list_deployments(self) -> list[RawDeployment]: ...

    def event_stream(
        self, event_types: Sequence[str]
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


class RequestObserver(Protocol):
    """What the client reports of each request (``Metrics`` is one)."""

    def on_request(self, method: str, status: str, seconds: float) -> None:
        """An answer (its status) or a failure (``connection_error``, ``error``)."""
