"""An answer read within a size limit, into memory that grows in place: the body is refused
once past its bound, not after it is all in."""

from __future__ import annotations

import mmap
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import msgspec

from controller.errors import MarathonUnavailable
from controller.marathon.urls import where_of

__all__ = ["MAX_ANSWER_BYTES", "MAX_APP_BYTES", "MAX_LIST_BYTES", "Answer", "BodySink",
           "read_answer"]

_MIB = 1024 * 1024
# Body limits far above real clusters (an app is a few KiB; 10 000 apps ~ 100 MiB), far
# below what would exhaust memory.
MAX_LIST_BYTES = 256 * _MIB
MAX_APP_BYTES = 16 * _MIB
MAX_ANSWER_BYTES = _MIB  # /v2/info, a write's answer, an error body: Marathon's are tiny


class Answer(msgspec.Struct, frozen=True):
    """One HTTP answer with its body, read within a size limit."""

    status: int
    headers: Mapping[str, str]
    body: bytes | memoryview
    where: str
    """The URL that answered, without its query (``where_of``)."""
    authorized: bool
    """Whether the request carried credentials."""


class BodySink(Protocol):
    """Where an answer's bytes go as they come (``_Body`` keeps them; a list decoder may
    decode them as it goes, ``controller.applist.AppListStream``)."""

    @property
    def size(self) -> int:
        """Bytes taken so far."""
        ...

    def append(self, chunk: bytes) -> None: ...

    def view(self) -> bytes | memoryview:
        """The bytes it holds, once all are in."""
        ...


async def read_answer(response: aiohttp.ClientResponse, limit: int, request: str,
                      sink: BodySink | None = None) -> Answer:
    """Read the body, refusing it once past ``limit`` bytes rather than after it is all in;
    into ``sink`` when given, unless the answer is an error."""
    where = where_of(str(response.url))
    if response.status >= 400:
        limit = MAX_ANSWER_BYTES
    refusal = f"{request}: {where} answered more than {limit // _MIB} MiB, which is refused"
    if response.content_length is not None and response.content_length > limit:
        raise MarathonUnavailable(refusal, status=response.status)
    body: BodySink = (sink if sink is not None and response.status < 400
                      else _Body(mapped=limit > MAX_APP_BYTES))  # lists may be tens of MB
    async for chunk in response.content.iter_any():
        if body.size + len(chunk) > limit:
            raise MarathonUnavailable(refusal, status=response.status)
        body.append(chunk)
    return Answer(response.status, response.headers, body.view(), where,
                  "Authorization" in response.request_info.headers)


class _Body:
    """An answer's bytes as they come, in memory that is mapped in place of copied: a 60 MB
    list costs 60 MB, where chunks joined at the end (or a bytearray grown by reallocation)
    cost twice that at the peak. The mapping goes back to the system when the last view of it
    is dropped, so the raw body lives no longer than its decoding."""

    _FIRST = 1024 * 1024

    def __init__(self, *, mapped: bool) -> None:
        self.size = 0
        self._chunks: list[bytes] = []
        self._map: mmap.mmap | None = None
        self._mapped = mapped
        """Map past the first MiB; else (answers that are small) keep the chunks."""

    def append(self, chunk: bytes) -> None:
        end = self.size + len(chunk)
        if self._map is None and (end <= self._FIRST or not self._mapped):
            self._chunks.append(chunk)
        else:
            if self._map is None:
                self._map = mmap.mmap(-1, 2 * self._FIRST, flags=mmap.MAP_PRIVATE)
                self._map[:self.size] = b"".join(self._chunks)
                self._chunks = []
            if end > len(self._map):
                self._grow(max(end, 2 * len(self._map)))
            self._map[self.size:end] = chunk
        self.size = end

    def _grow(self, size: int) -> None:
        assert self._map is not None
        try:
            self._map.resize(size)  # mremap: nothing is copied
        except (OSError, SystemError):  # no mremap (not Linux): copy once per doubling
            grown = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
            grown[:self.size] = self._map[:self.size]
            self._map.close()
            self._map = grown

    def view(self) -> bytes | memoryview:
        if self._map is None:
            return b"".join(self._chunks)
        return memoryview(self._map)[:self.size]
