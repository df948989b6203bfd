"""Fuzzing the SSE decoder: random bytes, SSE-shaped noise, giant lines, any chunking.

The contract: ``feed_bytes`` returns events or raises ``EventTooLargeError`` (after which the
watcher drops the connection and the decoder), never anything else; what it returns does not
depend on how the bytes were cut; and it never holds much more memory than the limit allows,
however small the pieces a line or an event arrives in.
"""

from __future__ import annotations

import itertools
import tracemalloc
from dataclasses import dataclass

from hypothesis import example, given
from hypothesis import strategies as st

from controller.sse import EventTooLargeError, ServerSentEvent, SSEDecoder
from tests.fuzz.budget import count, fuzz_settings

TOO_LARGE = "too large"


def decode(chunks: list[bytes], limit: int) -> list[ServerSentEvent] | str:
    """The events of a whole connection, or ``TOO_LARGE``; anything else raised escapes."""
    decoder = SSEDecoder(max_event_bytes=limit)
    events: list[ServerSentEvent] = []
    try:
        for chunk in chunks:
            events.extend(decoder.feed_bytes(chunk))
    except EventTooLargeError:
        return TOO_LARGE
    for event in events:
        assert isinstance(event.event, str)
        assert isinstance(event.data, str)
        assert event.id is None or isinstance(event.id, str)
        assert event.retry is None or isinstance(event.retry, int)
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


limits = st.one_of(st.integers(1, 200), st.just(1_048_576))
"""Tiny limits, so that random input crosses them, and the default."""

names = st.sampled_from([b"data", b"event", b"id", b"retry", b"", b":", b"dat", b"\xef\xbb\xbf"])
separators = st.sampled_from([b":", b": ", b"", b"::"])
values = st.one_of(st.binary(max_size=30), st.text(max_size=30).map(
    lambda t: t.encode("utf-8", "surrogatepass")), st.sampled_from(
    [b"123", b"\xff\xfe", b"\xe2\x82", b"\x00", b"\r", b"\n", b"\r\n", b"9" * 20]))
line_ends = st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n", b"\r\r", b""])
sse_lines = st.builds(lambda n, s, v, e: n + s + v + e, names, separators, values, line_ends)
sse_streams = st.lists(sse_lines, max_size=40).map(b"".join)
streams = st.one_of(st.binary(max_size=2000), sse_streams,
                    st.builds(bytes.__add__, st.sampled_from([b"\xef\xbb\xbf", b"\xef"]),
                              sse_streams))


class TestAnyBytes:
    @fuzz_settings(quick=300, full=35_000)
    @given(data=streams, cuts=st.lists(st.integers(0, 4000), max_size=20), limit=limits)
    def test_events_or_the_one_error_whatever_the_chunking(self, data: bytes, cuts: list[int],
                                                          limit: int) -> None:
        """Any bytes, cut anywhere, decode to the same events or the same size error."""
        count("sse: any bytes")
        assert decode(split(data, cuts), limit) == decode([data], limit)


@dataclass(frozen=True, slots=True)
class GiantLine:
    prefix: bytes
    filler: bytes
    repeat: int
    chunk_size: int
    limit: int

    @property
    def line(self) -> bytes:
        return self.prefix + self.filler * self.repeat

    def chunks(self) -> list[bytes]:
        """The line then its end, cut in equal pieces (the end alone in the last one)."""
        line, size = self.line, self.chunk_size
        return [line[i:i + size] for i in range(0, len(line), size)] + [b"\n\n"]

    @property
    def characters(self) -> int:
        return len(self.line.decode("utf-8", "replace"))


fillers = st.sampled_from([b"x", b"9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xff", b"ab"])
"""ASCII, digits (a huge ``retry``), 3- and 4-byte characters, invalid UTF-8."""
prefixes = st.sampled_from([b"data: ", b"retry: ", b"id: ", b"event: ", b": ", b"x: ", b""])


@st.composite
def giant_lines(draw: st.DrawFn) -> GiantLine:
    limit = draw(st.integers(1, 150_000))
    filler = draw(fillers)
    repeat = draw(st.integers(0, 2 * limit // len(filler) + 2))
    return GiantLine(prefix=draw(prefixes), filler=filler, repeat=repeat,
                     chunk_size=draw(st.sampled_from([1, 2, 3, 7, 64, 4096, 1 << 20])),
                     limit=limit)


MEMORY_SLACK = 1 << 20
PER_CHARACTER = 16
"""A character of the limit costs at most 4 bytes and is held at most 4 times at once (the
pieces, their join, the joined line and the split line). The decoder this target caught held
about 85 bytes per character when characters came one at a time."""
CHUNK = 65536


class TestGiantLines:
    @fuzz_settings(quick=30, full=4_000)
    @given(giant_lines())
    @example(GiantLine(prefix=b"retry: ", filler=b"9", repeat=5000, chunk_size=4096,
                       limit=1_048_576))  # found by this target: int() refused 4,300+ digits
    @example(GiantLine(prefix=b"", filler=b"\xe2\x82\xac", repeat=100_000, chunk_size=3,
                       limit=100_000))  # found by this target: 8.8 MB held for 100,000 characters
    def test_cut_off_at_the_limit_in_bounded_memory(self, giant: GiantLine) -> None:
        """A line longer than the limit raises the size error, one shorter decodes; either
        way the decoder holds a few bytes per character of the limit, never 50."""
        count("sse: giant lines")
        chunks = giant.chunks()
        tracemalloc.start()
        try:
            outcome = decode(chunks, giant.limit)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (outcome == TOO_LARGE) == (giant.characters > giant.limit)
        assert peak <= MEMORY_SLACK + PER_CHARACTER * (giant.limit + giant.chunk_size)

    @fuzz_settings(quick=10, full=1_000)
    @given(limit=st.integers(1, 200_000), lines=st.integers(1, 60_000),
           value=st.sampled_from([b"", b"\xe2\x82\xac", b"ab"]))
    @example(limit=100_000, lines=50_000, value=b"\xe2\x82\xac")  # found by this target: 4.9 MB
    def test_many_data_lines_are_bounded_too(self, limit: int, lines: int, value: bytes) -> None:
        """An event made of many tiny ``data`` lines is bounded like one giant line (chunks of
        64 KiB, as a socket gives them: a chunk's own lines cost what they cost)."""
        count("sse: many data lines")
        stream = (b"data:" + value + b"\n") * lines + b"\n"
        chunks = [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]
        tracemalloc.start()
        try:
            outcome = decode(chunks, limit)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # a line counts in full, on top of the data lines before it (1 more for each LF)
        width = len(value.decode())
        assert (outcome == TOO_LARGE) == (len("data:") + width + (lines - 1) * (width + 1) > limit)
        assert peak <= MEMORY_SLACK + PER_CHARACTER * limit + 10 * CHUNK
