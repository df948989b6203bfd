"""The SSE decoder: WHATWG examples, Marathon's framing, limits, then chunking properties."""

from __future__ import annotations

import itertools
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.sse import EventTooLargeError, ServerSentEvent, SSEDecoder

E = ServerSentEvent
T = TypeVar("T", str, bytes)


def decode(text: str) -> list[ServerSentEvent]:
    return SSEDecoder().feed(text)


def decode_chunks(chunks: list[str], **kwargs: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(**kwargs)
    return [event for chunk in chunks for event in decoder.feed(chunk)]


class TestWhatwgExamples:
    """The examples from the HTML standard's "Server-sent events" section."""

    def test_data_lines_are_joined_with_newlines(self) -> None:
        """Several data fields make one event whose lines are joined with LF."""
        assert decode("data: YHOO\ndata: +2\ndata: 10\n\n") == [E(data="YHOO\n+2\n10")]

    def test_comments_ids_and_unterminated_event(self) -> None:
        """Comments are skipped, ids carry over, and an event without a blank line is not sent."""
        stream = (": test stream\n\ndata: first event\nid: 1\n\n"
                  "data:second event\nid\n\ndata:  third event\n")
        assert decode(stream) == [E(data="first event", id="1"), E(data="second event", id="")]

    def test_empty_data_fields(self) -> None:
        """A bare ``data`` field counts as an empty line of data."""
        assert decode("data\n\ndata\ndata\n\ndata:\n") == [E(data=""), E(data="\n")]

    def test_space_after_colon_is_optional(self) -> None:
        """``data:test`` and ``data: test`` mean the same."""
        assert decode("data:test\n\ndata: test\n\n") == [E(data="test"), E(data="test")]

    def test_event_types(self) -> None:
        """The ``event`` field names the type; without it the type is ``message``."""
        stream = "event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\ndata: 113411\n\n"
        assert decode(stream) == [
            E(event="add", data="73857293"),
            E(event="remove", data="2153"),
            E(event="message", data="113411"),
        ]


class TestFields:
    def test_only_one_leading_space_is_stripped(self) -> None:
        """The value keeps every space after the first."""
        assert decode("data:   x\n\n") == [E(data="  x")]

    def test_colons_in_the_value_are_kept(self) -> None:
        """Only the first colon separates name and value."""
        assert decode('data: {"a": "b:c"}\n\n') == [E(data='{"a": "b:c"}')]

    def test_unknown_fields_are_ignored(self) -> None:
        """A field the spec does not define changes nothing."""
        assert decode("foo: bar\ndata: x\nData: y\n\n") == [E(data="x")]

    def test_field_without_colon_has_empty_value(self) -> None:
        """``event`` alone sets an empty type, which means ``message``."""
        assert decode("event\ndata: x\n\n") == [E(data="x")]

    def test_event_type_resets_after_dispatch(self) -> None:
        """An event's type does not leak into the next one."""
        assert decode("event: a\ndata: 1\n\ndata: 2\n\n") == [E("a", "1"), E(data="2")]

    def test_block_without_data_is_not_dispatched(self) -> None:
        """A block with no data sends nothing and its type is dropped."""
        assert decode("event: a\n\ndata: 2\n\n") == [E(data="2")]

    def test_id_with_nul_is_ignored(self) -> None:
        """An id containing NUL leaves the last event id unchanged."""
        assert decode("id: 1\ndata: a\n\nid: 2\0\ndata: b\n\n") == [
            E(data="a", id="1"), E(data="b", id="1")]

    def test_retry_is_read_when_all_ascii_digits(self) -> None:
        """``retry`` takes base-ten ASCII digits only and applies to its own event."""
        stream = "retry: 3000\ndata: a\n\nretry: 3s\ndata: b\n\nretry: \u0663\ndata: c\n\n"
        assert decode(stream) == [E(data="a", retry=3000), E(data="b"), E(data="c")]

    def test_retry_too_long_for_an_integer_is_ignored(self) -> None:
        """More than 18 significant digits are ignored, however many leading zeros come first."""
        stream = f"retry: {'9' * 5000}\ndata: a\n\nretry: {'0' * 5000}42\ndata: b\n\n"
        assert decode(stream) == [E(data="a"), E(data="b", retry=42)]

    def test_leading_byte_order_mark_is_dropped(self) -> None:
        """One BOM at the start of the stream is not part of the first field name."""
        assert decode_chunks(["", "\ufeffdata: x\n\n\ufeffdata: y\n\n"]) == [E(data="x")]

    def test_unicode_line_separators_are_data(self) -> None:
        """Only CR and LF end lines; U+2028, VT, FF and NEL are ordinary characters."""
        value = "a\u2028b\x0bc\x0cd\x85e"
        assert decode(f"data: {value}\n\n") == [E(data=value)]

    @pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85",
                                      "\u2028", "\u2029"])
    def test_other_line_breaks_of_python_are_data(self, char: str) -> None:
        """``str.splitlines`` breaks at each of these, alone in an ASCII text or not; the
        decoder never does, in either of its two ways of finding lines."""
        stream = f"event: a{char}b\r\ndata: x{char}y\r\n\r\ndata: z\n\n"
        assert decode(stream) == [E(event=f"a{char}b", data=f"x{char}y"), E(data="z")]


class TestLineEnds:
    def test_crlf_split_across_chunks_is_one_line_end(self) -> None:
        """A CR ending one chunk and a LF starting the next do not make a blank line."""
        assert decode_chunks(["data: a\r", "\ndata: b\r\n\r\n"]) == [E(data="a\nb")]

    def test_event_is_dispatched_at_its_final_cr(self) -> None:
        """The event is out as soon as the CR arrives, not held until the LF."""
        decoder = SSEDecoder()
        assert decoder.feed("data: a\r\n\r") == [E(data="a")]
        assert decoder.feed("\n") == []

    def test_bare_cr_ends_lines(self) -> None:
        """Old Mac line ends work too."""
        assert decode("data: a\rdata: b\r\r") == [E(data="a\nb")]

    def test_lone_lf_after_a_lone_cr_chunk_is_skipped_once(self) -> None:
        """Only the LF right after the CR is swallowed; a second LF is a blank line."""
        assert decode_chunks(["data: a\r", "\n", "\n"]) == [E(data="a")]


class TestMarathonFraming:
    """What Jetty's EventSourceServlet writes for Marathon (docs/marathon.md §3)."""

    PAYLOAD = '{"appId":"/my-app","taskStatus":"TASK_RUNNING","eventType":"status_update_event"}'

    def test_status_update_event(self) -> None:
        """``event: <type>\\r\\ndata: <json>\\r\\n\\r\\n`` is one event of that type."""
        stream = f"event: status_update_event\r\ndata: {self.PAYLOAD}\r\n\r\n"
        assert decode(stream) == [E(event="status_update_event", data=self.PAYLOAD)]

    def test_heartbeats_are_silent(self) -> None:
        """Heartbeats (``\\r`` and ``\\n`` flushed apart) between events dispatch nothing."""
        event = f"event: deployment_info\r\ndata: {self.PAYLOAD}\r\n\r\n"
        chunks = ["\r", "\n", event[:20], event[20:], "\r", "\n", "\r", "\n", event]
        assert decode_chunks(chunks) == [E(event="deployment_info", data=self.PAYLOAD)] * 2

    def test_heartbeat_inside_an_event_ends_it(self) -> None:
        """A heartbeat that lands right after an event's data line is that event's blank line."""
        chunks = ["event: x\r\ndata: 1\r\n", "\r", "\n"]
        assert decode_chunks(chunks) == [E(event="x", data="1")]


class TestPieces:
    def test_line_in_hundreds_of_chunks_decodes_whole(self) -> None:
        """A line cut into more pieces than one block holds comes out in order."""
        value = "".join(chr(0x41 + i % 26) for i in range(1000))
        assert decode_chunks(["data: ", *value, "\n\n"]) == [E(data=value)]

    def test_event_of_hundreds_of_data_lines_joins_them_in_order(self) -> None:
        """Many ``data`` lines are joined with LF, in order, past the first block."""
        values = [str(i) for i in range(500)]
        stream = "".join(f"data: {v}\n" for v in values) + "\n"
        assert decode(stream) == [E(data="\n".join(values))]


class TestBytes:
    def test_multibyte_characters_split_across_chunks(self) -> None:
        """UTF-8 sequences cut between chunks decode whole."""
        raw = "data: é€😀\r\n\r\n".encode()
        decoder = SSEDecoder()
        events = [e for i in range(len(raw)) for e in decoder.feed_bytes(raw[i:i + 1])]
        assert events == [E(data="é€😀")]

    def test_invalid_utf8_is_replaced(self) -> None:
        """Bytes that are not UTF-8 become U+FFFD instead of failing the stream."""
        assert SSEDecoder().feed_bytes(b"data: a\xffb\n\n") == [E(data="a\ufffdb")]


class TestLimits:
    def test_error_is_a_value_error(self) -> None:
        """Callers that catch ValueError also catch an oversized event."""
        assert issubclass(EventTooLargeError, ValueError)

    def test_event_at_the_limit_is_accepted(self) -> None:
        """An event whose line is exactly the limit long passes."""
        line = "data: " + "x" * 94
        assert decode_chunks([line, "\n\n"], max_event_bytes=100) == [E(data="x" * 94)]

    def test_endless_line_raises_before_buffering_more_than_the_limit(self) -> None:
        """A line that never ends raises once the buffered text passes the limit."""
        decoder = SSEDecoder(max_event_bytes=100)
        for _ in range(10):
            decoder.feed("x" * 10)
        with pytest.raises(EventTooLargeError):
            decoder.feed("x")

    def test_many_data_lines_raise(self) -> None:
        """Data lines add up: an event made of many small lines is bounded too."""
        decoder = SSEDecoder(max_event_bytes=100)
        for _ in range(15):
            decoder.feed("data: 12345\n")
        with pytest.raises(EventTooLargeError):
            decoder.feed("data: 12345\n")

    def test_limit_applies_per_event(self) -> None:
        """Data of dispatched events no longer counts."""
        assert len(decode_chunks(["data: " + "x" * 50 + "\n\n"] * 10, max_event_bytes=100)) == 10

    def test_long_line_in_one_chunk_raises(self) -> None:
        """A whole oversized line in a single chunk raises as well."""
        with pytest.raises(EventTooLargeError):
            decode_chunks([": " + "x" * 200 + "\n"], max_event_bytes=100)


# -- properties ----------------------------------------------------------------------------

# Any character but CR and LF (surrogates cannot be encoded), so VT, NEL, U+2028 … show up.
values = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
                 max_size=20)
field_lines = st.one_of(
    st.builds(lambda name, sep, v: f"{name}{sep}{v}",
              st.sampled_from(["data", "event", "id", "retry", "foo", ""]),
              st.sampled_from([":", ": ", ""]), values),
    st.just(""),
)
streams = st.lists(field_lines, max_size=30)
line_ends = st.sampled_from(["\r\n", "\n", "\r"])


def split_at(text: T, cuts: list[int]) -> list[T]:
    bounds = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def cuts_in(text: T) -> st.SearchStrategy[list[int]]:
    """Split points, biased to fall inside CRLF pairs, the case chunking most often breaks."""
    cr = b"\r" if isinstance(text, bytes) else "\r"
    after_cr = [i + 1 for i in range(len(text)) if text[i:i + 1] == cr]
    anywhere = st.integers(0, len(text))
    return st.lists(st.one_of(anywhere, st.sampled_from(after_cr)) if after_cr else anywhere)


def outcome(decoder: SSEDecoder, chunks: list[str]) -> list[ServerSentEvent] | str:
    """The events, or ``"too large"`` if the decoder gave up."""
    try:
        return [event for chunk in chunks for event in decoder.feed(chunk)]
    except EventTooLargeError:
        return "too large"


class TestProperties:
    @given(lines=streams, end=line_ends, data=st.data())
    def test_text_chunking_does_not_matter(self, lines: list[str], end: str,
                                           data: st.DataObject) -> None:
        """Any split of the same text yields the same events."""
        text = "".join(line + end for line in lines)
        cuts = data.draw(cuts_in(text))
        assert decode_chunks(split_at(text, cuts)) == decode(text)

    @given(lines=streams, end=line_ends, data=st.data())
    def test_byte_chunking_does_not_matter(self, lines: list[str], end: str,
                                           data: st.DataObject) -> None:
        """Any split of the same UTF-8 bytes, even inside a character, yields the same events."""
        text = "".join(line + end for line in lines)
        raw = text.encode()
        cuts = data.draw(cuts_in(raw))
        decoder = SSEDecoder()
        events = [e for chunk in split_at(raw, cuts) for e in decoder.feed_bytes(chunk)]
        assert events == decode(text)

    @given(lines=streams, data=st.data())
    def test_line_end_style_does_not_matter(self, lines: list[str], data: st.DataObject) -> None:
        """CRLF, LF and CR, even mixed line by line, give the same events as LF alone."""
        ends = data.draw(st.lists(line_ends, min_size=len(lines), max_size=len(lines)))
        for i in range(1, len(lines)):
            if ends[i - 1] == "\r" and not lines[i] and ends[i] == "\n":
                ends[i] = "\r\n"  # else CR, LF would read as one CRLF, not as a blank line
        mixed = "".join(line + end for line, end in zip(lines, ends, strict=True))
        assert decode(mixed) == decode("".join(line + "\n" for line in lines))

    @given(lines=streams, end=line_ends, limit=st.integers(1, 60), data=st.data())
    def test_limit_does_not_depend_on_chunking(self, lines: list[str], end: str, limit: int,
                                               data: st.DataObject) -> None:
        """Whether a stream is too large does not depend on how it was split."""
        text = "".join(line + end for line in lines)
        cuts = data.draw(cuts_in(text))
        whole = outcome(SSEDecoder(max_event_bytes=limit), [text])
        split = outcome(SSEDecoder(max_event_bytes=limit), split_at(text, cuts))
        assert (whole == "too large") == (split == "too large")
        if whole != "too large":
            assert split == whole

    @given(limit=st.integers(1, 500), chunk_size=st.integers(1, 100))
    def test_endless_line_is_never_buffered_past_the_limit(self, limit: int,
                                                           chunk_size: int) -> None:
        """A line that never ends raises on the first chunk that takes it past the limit."""
        decoder = SSEDecoder(max_event_bytes=limit)
        for _ in range(limit // chunk_size):
            decoder.feed("x" * chunk_size)
        with pytest.raises(EventTooLargeError):
            decoder.feed("x" * chunk_size)
