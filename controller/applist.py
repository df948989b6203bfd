"""Reading ``GET /v2/apps`` for planning: only the fields the planner reads, nothing else kept.

A 10,000-app list is 10 MB or more of JSON, and planning reads a handful of fields of each app
(``controller.plan``): its id, the opt-in label, ``container.type``, ``container.docker.image``,
``fetch`` and ``uris``. A typed decoder (msgspec) builds only those and skips the rest while it
parses, several times faster than ``json.loads`` and in a fraction of the memory. A write is
never planned from these copies: it is planned from a fresh full read of the one app, so the
fields a partial update must re-send come from there.

Nothing here judges a value: every field is decoded as whatever JSON it holds (a wrong kind is
the planner's ``InvalidAppError`` for that app alone, as it would be from ``json.loads``), and an
answer the typed decoder refuses (not JSON, no ``apps`` list, ``NaN``, a byte-order mark) is read
again with ``json.loads`` by the caller, so it is accepted or refused, in the same words, exactly
as before. Used only by ``controller.marathon``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from controller.gcpause import collector_paused
from controller.model import RawApp

__all__ = ["AppList", "AppListDecoder"]

# Any JSON value that is not an object. msgspec takes one object type per union, so each object
# below is spelt "this shape, or any other JSON value".
_NOT_OBJECT = None | bool | int | float | str | list[Any]


class _Docker(msgspec.Struct, gc=False):
    image: Any = msgspec.UNSET


class _Container(msgspec.Struct, gc=False):
    type: Any = msgspec.UNSET
    docker: _Docker | _NOT_OBJECT | msgspec.UnsetType = msgspec.UNSET


class _Labels(msgspec.Struct, gc=False):
    """The one label the planner reads (renamed to it per decoder)."""

    value: Any = msgspec.UNSET


class _App(msgspec.Struct, gc=False):
    id: Any = msgspec.UNSET
    labels: Any = msgspec.UNSET
    container: _Container | _NOT_OBJECT | msgspec.UnsetType = msgspec.UNSET
    fetch: Any = msgspec.UNSET
    uris: Any = msgspec.UNSET


class AppList(msgspec.Struct):
    """A well-formed ``{"apps": […]}`` answer, its objects cut to the planned fields."""

    apps: list[Any]


class AppListDecoder:
    """Decodes app lists keeping, of the labels, only ``label`` (all of them when ``None``)."""

    def __init__(self, label: str | None = None) -> None:
        self._label = label
        labels: Any = Any
        if label is not None:
            kept = msgspec.defstruct("_KeptLabels", [("value", Any, msgspec.UNSET)],
                                     bases=(_Labels,), rename={"value": label}, gc=False)
            labels = kept | _NOT_OBJECT
        app = msgspec.defstruct("_PlannedApp", [("labels", labels, msgspec.UNSET)],
                                bases=(_App,), gc=False)
        self._entries = app | _NOT_OBJECT
        self._decoder: msgspec.json.Decoder[AppList] = msgspec.json.Decoder(
            msgspec.defstruct("_PlannedAppList", [("apps", list[self._entries])],  # type: ignore[name-defined]
                              bases=(AppList,)))

    def decode(self, body: bytes | memoryview) -> AppList | None:
        """The list, or ``None`` for any answer the typed decoder refuses (read it with
        ``json.loads`` and ``convert`` its ``apps``, to accept or refuse it as before)."""
        try:
            with collector_paused():
                return self._decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return None

    def convert(self, apps: list[Any]) -> AppList:
        """The entries of an answer read with ``json.loads``, cut as ``decode`` cuts them."""
        return AppList(apps=msgspec.convert(apps, list[self._entries]))  # type: ignore[name-defined]

    def planned(self, listed: AppList) -> list[Any]:
        """Each app as the planner's ``RawApp`` (other entries as they were), emptying
        ``listed`` as it goes so that no app is held twice."""
        entries = listed.apps
        listed.apps = []
        with collector_paused():
            for i, entry in enumerate(entries):
                if isinstance(entry, _App):
                    entries[i] = self._raw(entry)
        return entries

    def _raw(self, app: _App) -> RawApp:
        raw: dict[str, Any] = {}
        for name in ("id", "labels", "container", "fetch", "uris"):
            value = getattr(app, name)
            if value is msgspec.UNSET:
                continue
            if isinstance(value, _Labels):
                value = {} if value.value is msgspec.UNSET else {self._label: value.value}
            elif isinstance(value, _Container):
                value = _container(value)
            raw[name] = value
        return raw  # type: ignore[return-value]


def _container(container: _Container) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if container.type is not msgspec.UNSET:
        raw["type"] = container.type
    docker = container.docker
    if isinstance(docker, _Docker):
        raw["docker"] = {} if docker.image is msgspec.UNSET else {"image": docker.image}
    elif docker is not msgspec.UNSET:
        raw["docker"] = docker
    return raw

