"""Reading ``GET /v2/apps`` for planning: the planned fields only, decoded as the answer comes,
and which listed apps need no plan at all.

A 10,000-app list is 10 MB or more of JSON, and planning reads a handful of fields of each app
(``controller.plan.PLANNED_FIELDS``): its id, the opt-in label, ``container.type``,
``container.docker.image``, ``fetch`` and ``uris``. A typed decoder (msgspec) builds only those,
into compact structs (``ListedApp``), and skips the rest while it parses. A write is never
planned from these copies: it is planned from a fresh full read of the one app, so the fields a
partial update must re-send come from there.

**As the answer comes** (``AppListStream``): the list is decoded a piece at a time, cut between
two apps, so that the raw answer is never held whole (60 MB at 50,000 apps). A cut is looked for
where one app ends and the next begins with its id, as Marathon writes them (``},{"id":``, with
any whitespace), and a piece counts only once the typed decoder reads it as a list of whole
values: a cut that fell inside an app (between two of its deployments, say) leaves brackets
open, which no decoder accepts, so the piece just grows. A valid answer thus decodes to the very
list one whole decoding gives. An answer that does not begin ``{"apps":[`` is kept whole and
decoded at the end, as before; one whose end is not ``]}`` or whose last piece is refused is
read again whole by the client (``MarathonClient.list_apps``), as early pieces are gone.

Nothing here judges a value: every field is decoded as whatever JSON it holds (a wrong kind is
the planner's ``InvalidAppError`` for that app alone, as it would be from ``json.loads``), and an
answer the typed decoder refuses (not JSON, no ``apps`` list, ``NaN``, a byte-order mark) is read
with ``json.loads`` by the caller, so it is accepted or refused, in the same words, exactly as
before.

**Which apps need no plan** (``Triage``): an app that is not opted in and carries no entry of
this controller's, and an opted-in app whose entry is exactly in place, are told straight from
the structs, in a few microseconds, with the planner's own rules (``controller.plan``); every
other app is left to the planner, which must agree (``tests/unit/test_triage.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import msgspec

from controller.errors import InvalidAppError
from controller.gcpause import collector_paused
from controller.model import BundleLocation, RawApp
from controller.plan import (
    Eligibility,
    Planner,
    entry_ok,
    entry_owner,
    image_decision,
    label_says,
    not_opted_in,
)

__all__ = ["AppList", "AppListDecoder", "AppListStream", "ListedApp", "Settled", "Triage",
           "as_raw"]

# Any JSON value that is not an object. msgspec takes one object type per union, so each object
# below is spelt "this shape, or any other JSON value".
_NOT_OBJECT = None | bool | int | float | str | list[Any]


class _Docker(msgspec.Struct, gc=False):
    image: Any = msgspec.UNSET


class _Container(msgspec.Struct, gc=False):
    type: Any = msgspec.UNSET
    docker: _Docker | _NOT_OBJECT | msgspec.UnsetType = msgspec.UNSET


class _Labels(msgspec.Struct, gc=False):
    """The one label the planner reads (its value, renamed to the label per decoder)."""

    label: ClassVar[str] = ""
    value: Any = msgspec.UNSET


class ListedApp(msgspec.Struct, gc=False):
    """One listed app, cut to ``PLANNED_FIELDS`` (``labels`` as each decoder keeps them);
    ``UNSET`` where the app has no such field."""

    id: Any = msgspec.UNSET
    labels: Any = msgspec.UNSET
    container: _Container | _NOT_OBJECT | msgspec.UnsetType = msgspec.UNSET
    fetch: Any = msgspec.UNSET
    uris: Any = msgspec.UNSET


class AppList(msgspec.Struct):
    """A well-formed ``{"apps": […]}`` answer, its objects cut to the planned fields."""

    apps: list[Any]


def as_raw(app: ListedApp) -> RawApp:
    """The app as the planner's ``RawApp``: the fields it has, nested objects as dicts."""
    return _raw(app)  # type: ignore[return-value]


def _raw(struct: msgspec.Struct) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for name, key in zip(struct.__struct_fields__, struct.__struct_encode_fields__, strict=True):
        value = getattr(struct, name)
        if value is not msgspec.UNSET:
            raw[key] = _raw(value) if isinstance(value, msgspec.Struct) else value
    return raw


class AppListDecoder:
    """Decodes app lists keeping, of the labels, only ``label`` (all of them when ``None``)."""

    def __init__(self, label: str | None = None) -> None:
        labels: Any = Any
        if label is not None:
            kept = msgspec.defstruct("_KeptLabels", [("value", Any, msgspec.UNSET)],
                                     bases=(_Labels,), rename={"value": label},
                                     namespace={"label": label}, gc=False)
            labels = kept | _NOT_OBJECT
        app = msgspec.defstruct("_PlannedApp", [("labels", labels, msgspec.UNSET)],
                                bases=(ListedApp,), gc=False)
        self._entries = list[app | _NOT_OBJECT]  # type: ignore[valid-type]
        self._decoder: msgspec.json.Decoder[AppList] = msgspec.json.Decoder(
            msgspec.defstruct("_PlannedAppList", [("apps", self._entries)], bases=(AppList,)))
        self._pieces: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(self._entries)

    def decode(self, body: bytes | bytearray | memoryview) -> AppList | None:
        """The list, or ``None`` for any answer the typed decoder refuses (read it with
        ``json.loads`` and ``convert`` its ``apps``, to accept or refuse it as before)."""
        try:
            with collector_paused():
                return self._decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return None

    def decode_piece(self, piece: memoryview) -> list[Any] | None:
        """A JSON list of entries (``[app, app, …]``), each cut as ``decode`` cuts it; ``None``
        when the typed decoder refuses it."""
        try:
            with collector_paused():
                return self._pieces.decode(piece)
        except (msgspec.DecodeError, RecursionError):
            return None

    def convert(self, apps: list[Any]) -> AppList:
        """The entries of an answer read with ``json.loads``, cut as ``decode`` cuts them."""
        return AppList(apps=msgspec.convert(apps, self._entries))

    def stream(self) -> AppListStream:
        return AppListStream(self)


_WS = rb"[ \t\n\r]*"  # JSON's whitespace
_ENVELOPE = re.compile(_WS + rb'\{' + _WS + rb'"apps"' + _WS + rb":" + _WS + rb"\[")
_LAST_CUT = re.compile(rb".*\}" + _WS + rb"(,)" + _WS + rb'\{' + _WS + rb'"id"' + _WS + rb":",
                       re.DOTALL)
"""The last place where one app ends and the next begins with its id; group 1 is the comma
(the greedy ``.*`` finds it from the end)."""
_END = re.compile(rb".*(\])" + _WS + rb"\}" + _WS + rb"\Z", re.DOTALL)
"""The list's closing ``]``, when the answer ends ``]}``."""
_PIECE = 1 << 20
"""The answer is cut about every MiB."""
_NEVER = 1 << 62


class AppListStream:
    """One list answer, decoded a piece at a time as it comes (see the module docstring): a
    body sink for ``controller.marathon.body.read_answer``."""

    def __init__(self, decoder: AppListDecoder) -> None:
        self.size = 0
        self._decoder = decoder
        self._pending = bytearray()
        """What is not decoded yet: the whole answer until a first piece is cut off."""
        self._head: int | None = None
        """Where the ``[`` that opens what is pending is (once the envelope is seen)."""
        self._looked = False
        """Whether the answer's start was looked at (it is once, when a piece is first due)."""
        self._apps: list[Any] = []
        self._cut = False
        self._next_try = _PIECE

    def append(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._pending += chunk
        if len(self._pending) >= self._next_try:
            self._cut_piece()

    def view(self) -> memoryview:
        """What is held undecoded: the whole answer while ``whole``."""
        return memoryview(self._pending)

    @property
    def whole(self) -> bool:
        """Whether no piece was cut off: the answer is held whole (``view``)."""
        return not self._cut

    def result(self) -> AppList | None:
        """The list, once the answer is in; ``None`` when the typed decoder refuses it (held
        ``whole``: ``view`` is the answer, for ``json.loads``; else it must be read again)."""
        if self.whole:  # as an answer under a MiB (a piece's size) always is
            return self._decoder.decode(self._pending)
        end = _END.match(self._pending)
        last = self._decoded(end.start(1) + 1) if end is not None else None
        if last is None:
            return None
        apps, self._apps = self._apps, []
        apps += last
        return AppList(apps=apps)

    def _cut_piece(self) -> None:
        """Decode every whole app held but the last, if the last cut holds; else wait for twice
        as much (a cut inside an app, or an answer that is not JSON: it is judged at the end).
        An answer that does not begin ``{"apps":[`` is never cut."""
        if not self._looked:
            self._looked = True
            envelope = _ENVELOPE.match(self._pending)
            self._head = envelope.end() - 1 if envelope is not None else None
        if self._head is None:
            self._next_try = _NEVER
            return
        cut = _LAST_CUT.match(self._pending, self._head)
        comma = cut.start(1) if cut is not None else -1
        if comma > self._head:
            self._pending[comma] = ord("]")
            apps = self._decoded(comma + 1)
            if apps is not None:
                self._apps += apps
                self._cut = True
                self._pending[comma] = ord("[")
                del self._pending[:comma]  # in place: a bytearray drops its head for free
                self._head = 0
                self._next_try = len(self._pending) + _PIECE
                return
            self._pending[comma] = ord(",")
        self._next_try = 2 * len(self._pending)

    def _decoded(self, end: int) -> list[Any] | None:
        """The entries in ``[`` … ``]``, from the head to ``end``; ``None`` if refused."""
        with memoryview(self._pending) as held, held[self._head or 0:end] as piece:
            return self._decoder.decode_piece(piece)


class Settled(NamedTuple):
    """What the triage found of an app that needs nothing."""

    decision: Eligibility
    location: BundleLocation | None
    """The bundle whose entry is in place (``None``: not opted in)."""
    image: str | None


class Triage:
    """Which listed apps need nothing, told from their structs without a plan (see the module
    docstring), against the bundle ``locations`` of one list.

    ``settled`` takes an app ``MarathonClient.list_apps`` keeps (its id is text that starts with
    ``/``); ``None`` leaves it to the planner.
    """

    def __init__(self, planner: Planner, locations: Mapping[str, BundleLocation]) -> None:
        self._label = planner.label
        self._rules = planner.rules
        self._owns = planner.ownership.owns
        self.locations = locations
        self._not_ours = Settled(not_opted_in(planner.label), None, None)
        self._owners: dict[str, int] = {}
        """Whose each URI seen is (``_USER``, ``_OURS``, ``_THEIRS``): bundle URIs repeat."""

    def settled(self, app: ListedApp) -> Settled | None:
        labels, value = app.labels, None
        if isinstance(labels, _Labels):
            if labels.label != self._label:  # a decoder for another label: ask the planner
                return None
            value = labels.value
        elif type(labels) is dict:
            value = labels.get(self._label)
        elif labels is not msgspec.UNSET and labels is not None:
            return None  # labels that are no map: the planner reports them
        if type(value) is str:
            opted_in = label_says(value)
            if opted_in is None:
                return None  # a word the planner reports
        elif value is msgspec.UNSET or value is None:
            opted_in = False
        else:
            return None  # a value that is no text: the planner reports it
        fetch, uris = app.fetch, app.uris
        uris_only = fetch is msgspec.UNSET and uris is not msgspec.UNSET  # Dialect.fetch_field
        entries = uris if uris_only else fetch
        if entries is msgspec.UNSET or entries is None:
            entries = []
        elif type(entries) is not list:
            return None
        if not opted_in:
            for entry in entries:
                uri = _uri(entry, uris_only)
                if uri is None or self._owner(uri) == _OURS:
                    return None  # malformed, or an entry of ours to remove
            return self._not_ours
        container = app.container
        if not isinstance(container, _Container) or not _is_docker(container.type):
            return None
        docker = container.docker
        image = docker.image if isinstance(docker, _Docker) else None
        if type(image) is not str or not image:
            return None
        try:
            decision = image_decision(app.id, image, self._rules)
        except InvalidAppError:
            return None
        location = (self.locations.get(decision.registry) if decision.registry is not None
                    else None)
        if location is None:
            return None
        ours = None
        for entry in entries:
            uri = _uri(entry, uris_only)
            if uri is None:
                return None
            owner = self._owner(uri)
            if owner == _USER:
                continue
            if owner == _THEIRS or ours is not None:
                return None  # another controller's (a conflict), or a second entry of ours
            ours = entry
        if ours is None or not entry_ok(ours, location):
            return None
        return Settled(decision, location, image)

    def _owner(self, uri: str) -> int:
        found = self._owners.get(uri)
        if found is None:
            found = self._owners[uri] = (_USER if entry_owner(uri) is None
                                         else _OURS if self._owns(uri) else _THEIRS)
        return found


_USER, _OURS, _THEIRS = 0, 1, 2


def _is_docker(kind: Any) -> bool:
    """Whether the planner reads ``container.type`` as Docker (absent, null or empty too)."""
    return kind is msgspec.UNSET or kind is None or kind == "" or kind == "DOCKER"


def _uri(entry: Any, uris_only: bool) -> str | None:
    """An entry's URI, as the planner checks it; ``None`` for a malformed entry."""
    if uris_only:
        return entry if type(entry) is str else None
    uri = entry.get("uri") if type(entry) is dict else None
    return uri if type(uri) is str else None
