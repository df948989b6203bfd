"""Sans-I/O decoder for ``text/event-stream`` (WHATWG HTML, "Server-sent events").

The watcher owns the socket and feeds whatever chunks arrive; this module only turns text
into events, so it is tested without a network and reused by anything that reads SSE.

Marathon (Jetty's ``EventSourceServlet``) frames every event as ``event: <type>\\r\\n``,
``data: <json>\\r\\n``, ``\\r\\n`` and sends heartbeats as a bare blank line written as
``\\r`` and ``\\n`` in two flushes. A CR that ends one chunk therefore ends a line at once
(so an event is never held back until the next chunk) and a LF that starts the next chunk
is dropped, not read as a second, empty line.

Speed matters: one stream carries every event of a large cluster. Lines are found in whole
chunks at once: ``str.splitlines`` when the chunk holds no other line break it knows (an
ASCII chunk without VT, FF, FS, GS, RS: Marathon's JSON never holds them), else ``str.replace``
and ``str.split``; Python code runs once per line, never once per character.

Memory stays close to the text kept, however the stream is cut: a line split over many tiny
chunks, or an event made of many tiny ``data`` lines, is gathered by ``_Pieces``, which joins
every 64 pieces into one string. Kept as one string object per piece (some 50 bytes each), a
stream sent one character at a time would make the decoder hold over 80 bytes per character.
"""

from __future__ import annotations

import codecs
from typing import NamedTuple

__all__ = ["EventTooLargeError", "SSEDecoder", "ServerSentEvent"]

_BLOCK = 64
_MAX_RETRY_DIGITS = 18
"""Longer ``retry`` values are ignored, as browsers ignore what overflows their integer."""


class EventTooLargeError(ValueError):
    """One line or event outgrew the limit; the stream cannot be trusted, so drop it."""


def _spec_line_breaks_only(text: str) -> bool:
    """Whether CR, LF and CRLF are the only line breaks ``str.splitlines`` sees in ``text``.

    It also breaks at VT, FF, FS, GS, RS (ASCII) and NEL, LS, PS (not ASCII); an ASCII text
    without the first five is split as the spec says, in one pass without copying it first.
    """
    return (text.isascii() and "\x0b" not in text and "\x0c" not in text
            and "\x1c" not in text and "\x1d" not in text and "\x1e" not in text)


class _Pieces:
    """Text arriving in pieces, held in about its own size: every ``_BLOCK`` pieces become one
    string, so the per-object overhead is paid once per block; each character is copied twice."""

    __slots__ = ("_blocks", "_pieces")

    def __init__(self, first: str) -> None:
        self._blocks: list[str] = []
        self._pieces = [first]

    def add(self, piece: str) -> None:
        pieces = self._pieces
        pieces.append(piece)
        if len(pieces) == _BLOCK:
            self._blocks.append("".join(pieces))
            pieces.clear()

    def text(self) -> str:
        return "".join(self._blocks) + "".join(self._pieces)


class ServerSentEvent(NamedTuple):
    """One dispatched event.

    ``id`` is the stream's last event ID (it carries over to later events, as in the spec;
    ``None`` until an ``id`` field arrives); ``retry`` is the reconnection time in
    milliseconds if this event's block carried one. A named tuple: immutable, and made in half
    the time of a frozen dataclass, once per event of the stream.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental decoder: feed chunks in any split, get the completed events back.

    Use either ``feed`` or ``feed_bytes`` for one stream. A block without a ``data`` field
    dispatches nothing (Marathon's heartbeats are bare blank lines); a ``data`` field with
    an empty value makes an event with empty data, as the spec says.

    ``max_event_bytes`` bounds the text kept for one event (its data plus the line being
    read). It is counted in decoded characters, each at least one byte on the wire, which
    spares an encode per line. Past the limit ``feed`` raises :class:`EventTooLargeError`
    and forgets the buffered text; a new connection needs a new decoder anyway.
    """

    def __init__(self, max_event_bytes: int = 1_048_576) -> None:
        self._max_event_bytes = max_event_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_stream_start = True
        self._after_cr = False
        self._partial_line: _Pieces | None = None
        self._partial_line_size = 0
        self._event_type = ""
        self._data: str | None = None
        """The first ``data`` line; ``_more_data`` holds them all once a second one comes."""
        self._more_data: _Pieces | None = None
        self._data_size = 0
        self._last_event_id: str | None = None
        self._retry: int | None = None

    def feed_bytes(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode raw socket bytes as UTF-8 (characters may straddle chunks) and feed them."""
        return self.feed(self._utf8.decode(chunk))

    def feed(self, chunk: str) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return the events whose closing blank line it completed."""
        if not chunk:
            return []
        if self._at_stream_start:
            self._at_stream_start = False
            if chunk[0] == "\ufeff":  # the spec drops one leading byte order mark
                chunk = chunk[1:]
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == "\n":  # second half of a CRLF split across chunks
                chunk = chunk[1:]
        if not chunk:
            return []
        if "\n" not in chunk and "\r" not in chunk:
            self._keep_partial_line(chunk)
            return []

        if self._partial_line is not None:
            chunk = self._partial_line.text() + chunk
            self._forget_partial_line()
        self._after_cr = chunk[-1] == "\r"
        if _spec_line_breaks_only(chunk):  # then ``splitlines`` splits where the spec does
            lines = chunk.splitlines()
            unfinished = "" if chunk[-1] in "\r\n" else lines.pop()
        else:
            if "\r" in chunk:
                chunk = chunk.replace("\r\n", "\n")
                if "\r" in chunk:  # bare CR line ends are rare; spare the second pass
                    chunk = chunk.replace("\r", "\n")
            lines = chunk.split("\n")
            unfinished = lines.pop()

        # The loop runs once per line of the whole stream, so it works on locals and inlines
        # field handling; the state goes back to ``self`` once per chunk.
        events: list[ServerSentEvent] = []
        limit = self._max_event_bytes
        event_type = self._event_type
        data = self._data
        more_data = self._more_data
        data_size = self._data_size
        retry = self._retry
        for line in lines:
            if not line:
                if data is not None:
                    events.append(ServerSentEvent(
                        event_type or "message",
                        more_data.text() if more_data is not None else data,
                        self._last_event_id, retry))
                    data = more_data = None
                    data_size = 0
                event_type = ""
                retry = None
                continue
            # Whole lines count too, so the outcome does not depend on the chunking.
            if len(line) + data_size > limit:
                self._overflow(len(line) + data_size)
            # Marathon writes "data: " and "event: ": one copy each, no partition.
            if line[:6] == "data: ":
                name, value = "data", line[6:]
            elif line[:7] == "event: ":
                name, value = "event", line[7:]
            elif line[0] == ":":
                continue
            else:
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
            if name == "data":
                if data is None:
                    data = value
                else:
                    if more_data is None:
                        more_data = _Pieces(data)
                    more_data.add("\n")
                    more_data.add(value)
                data_size += len(value) + 1
            elif name == "event":
                event_type = value
            elif name == "id":
                if "\0" not in value:
                    self._last_event_id = value
            elif (name == "retry" and value.isascii() and value.isdigit()
                  and len(digits := value.lstrip("0")) <= _MAX_RETRY_DIGITS):
                retry = int(digits or "0")
        self._event_type = event_type
        self._data = data
        self._more_data = more_data
        self._data_size = data_size
        self._retry = retry
        if unfinished:
            self._keep_partial_line(unfinished)
        return events

    def _keep_partial_line(self, text: str) -> None:
        """Buffer an unfinished line, checking the limit before keeping anything."""
        size = self._partial_line_size + len(text)
        if size + self._data_size > self._max_event_bytes:
            self._overflow(size + self._data_size)
        if self._partial_line is None:
            self._partial_line = _Pieces(text)
        else:
            self._partial_line.add(text)
        self._partial_line_size = size

    def _forget_partial_line(self) -> None:
        self._partial_line = None
        self._partial_line_size = 0

    def _overflow(self, size: int) -> None:
        self._forget_partial_line()
        self._data = self._more_data = None
        self._data_size = 0
        raise EventTooLargeError(
            f"event exceeds {self._max_event_bytes} characters (reached {size})")
