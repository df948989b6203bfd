"""What one Marathon version accepts when an app is written: the method and the body.

Pure. The client keeps one (``MarathonClient.dialect()``, read from ``/v2/info`` once, or
forced by ``marathon.update_method``); the planner asks it which list carries an app's entries
and what the write body holds; the simulator's feature table can read its flags off it. Each
flag cites its section of ``docs/marathon.md``. An unknown version behaves as the newest,
except that the app's own fields then tell whether it predates ``fetch``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, cast

import msgspec

from controller.model import RawApp, RawAppUpdate, RawFetch, version_tuple

__all__ = ["RESENT_FIELDS", "Dialect", "FetchField", "WriteMethod"]

WriteMethod = Literal["PATCH", "PUT"]
FetchField = Literal["fetch", "uris"]

RESENT_FIELDS: Final = ("executorResources", "resourceLimits")
"""A partial update drops these when its body omits them (1.6.352+, §1.3): they are re-sent as the
app has them. Every version gets them, as the version may be unknown and older ones merge them
anyway (sending what the app has changes nothing)."""


class Dialect(msgspec.Struct, frozen=True, kw_only=True):
    version: tuple[int, ...] | None = None
    """The Marathon version (``(1, 10, 26)``), or ``None`` when not known."""
    write_method: WriteMethod = "PATCH"

    @classmethod
    def of(cls, version: str) -> Dialect:
        """The dialect of the Marathon whose ``/v2/info`` says ``version``."""
        known = cls(version=version_tuple(version))
        return msgspec.structs.replace(known, write_method="PATCH" if known.has_patch else "PUT")

    def _since(self, version: tuple[int, ...]) -> bool:
        return self.version is None or self.version >= version

    # -- what the version has (the simulator's feature table) ----------------------------------

    @property
    def has_fetch(self) -> bool:
        """``fetch`` exists since 0.15; before, an app has only ``uris`` (§2.2)."""
        return self._since((0, 15))

    @property
    def has_patch(self) -> bool:
        """PATCH, the ``partialUpdate`` flag and the ``Marathon-Deployment-Id`` header came in
        1.4.0 (§1.3, §1.4); before, PUT was always partial."""
        return self._since((1, 4))

    @property
    def shows_uris(self) -> bool:
        """Up to 1.4, GET shows ``uris`` beside ``fetch``, and the deprecated network fields
        (§1.1); never written back, as a body with both is refused (§2.2)."""
        return not self._since((1, 5))

    @property
    def filters_events(self) -> bool:
        """``/v2/events?event_type=`` is honoured since 1.3.7 (§3)."""
        return self._since((1, 3, 7))

    @property
    def drops_omitted_resources(self) -> bool:
        """Since 1.6.352 a partial update drops the ``RESENT_FIELDS`` its body omits (§1.3)."""
        return self._since((1, 6, 352))

    # -- how to write ----------------------------------------------------------------------

    def without_patch(self) -> Dialect:
        """This dialect writing with PUT (a server that answered PATCH with 405)."""
        return msgspec.structs.replace(self, write_method="PUT")

    @property
    def write_params(self) -> dict[str, str] | None:
        """The query of a write: a PUT asks for a partial update (ignored before 1.4, where
        PUT was always partial)."""
        return {"partialUpdate": "true"} if self.write_method == "PUT" else None

    def fetch_field(self, app: RawApp) -> FetchField:
        """The list that carries ``app``'s entries: ``fetch`` wherever it exists (≤ 1.4 shows
        ``uris`` too: ignored); ``uris`` only on a Marathon from before ``fetch``, which an
        unknown version is when the app has ``uris`` and no ``fetch`` key at all."""
        if self.version is not None:
            return "fetch" if self.has_fetch else "uris"
        return "uris" if "fetch" not in app and "uris" in app else "fetch"

    def update_body(self, app: RawApp, field: FetchField,
                    entries: Sequence[RawFetch | str]) -> RawAppUpdate:
        """The minimal partial-update body that gives ``app`` these ``entries``: the one list,
        and the ``RESENT_FIELDS`` as the app has them; never ``version``, never both lists."""
        listed: list[RawFetch] | list[str] = (
            [e if isinstance(e, str) else e["uri"] for e in entries] if field == "uris"
            else [e for e in entries if not isinstance(e, str)])  # the planner refused those
        fields: Mapping[str, Any] = app
        return cast(RawAppUpdate, {field: listed, **{
            name: fields[name] for name in RESENT_FIELDS if name in fields}})
