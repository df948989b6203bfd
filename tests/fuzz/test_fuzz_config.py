"""Fuzzing the config loader: random YAML, alias bombs, deep nesting, odd keys, odd bytes.

The contract: ``load_settings`` returns ``Settings`` or raises ``ConfigError``, in bounded
time and memory. Each file is loaded in a child process (``sandbox.py``) capped at
``HEADROOM`` more address space and ``SECONDS`` per file, so a bomb fails one example.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.config import load_settings
from controller.errors import ConfigError
from tests.fuzz.budget import FULL, count, fuzz_settings
from tests.fuzz.sandbox import Outcome, Sandbox

HEADROOM = 512 << 20
SECONDS = 10.0 if FULL else 2.0
ENV = {"REG_PW": "pw", "TOKEN": "t"}


def load(raw: bytes) -> str:
    """In the child: write ``raw`` as the config file and load it."""
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as tmp:
        path = Path(tmp, "config.yaml")
        path.write_bytes(raw)
        try:
            load_settings(path, ENV)
        except ConfigError:
            return "config error"
        return "loaded"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(headroom_bytes=HEADROOM, seconds=SECONDS, warm="controller.config")
    try:
        yield box
    finally:
        box.close()


def check(sandbox: Sandbox, raw: bytes) -> None:
    outcome = sandbox.run(load, bytes(raw))
    assert outcome.kind == "returned", describe(outcome)


def describe(outcome: Outcome) -> str:
    return f"{outcome.kind}: {outcome.summary}\n{outcome.details}"


# -- documents ------------------------------------------------------------------------------


class Made(bytes):
    """A config file shown as the call that made it: some are hundreds of kilobytes."""

    how = ""

    def __repr__(self) -> str:
        return self.how


def made(builder: Callable[..., bytes]) -> Callable[..., Made]:
    @functools.wraps(builder)
    def build(*args: object) -> Made:
        raw = Made(builder(*args))
        raw.how = f"{builder.__name__}({', '.join(map(repr, args))})"
        return raw

    return build


VALID: dict[str, Any] = {
    "marathon": {"urls": ["http://marathon.example.com:8080"], "timeout_seconds": 5},
    "registries": [{"host": "registry.example.com:5000",
                    "credentials": {"username": "robot", "password_env": "REG_PW"},
                    "apps": ["/team-a/*"], "max_age": "6h"}],
    "storage": {"filesystem": {"path": "/var/lib/pullsecrets"}},
    "reconcile": {"resync_seconds": 300, "workers": 4},
    "server": {"listen": "127.0.0.1:9102"},
    "logging": {"level": "info"},
}
SLOTS = ["(top level)", "marathon", "marathon.urls", "marathon.auth", "registries",
         "registries[0]", "registries[0].credentials", "registries[0].apps",
         "registries[0].host", "storage.filesystem", "reconcile.workers", "server.listen",
         "logging.level", "leader_election"]
"""Where a hostile value is put: every section, list and scalar kind the schema has."""

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.sampled_from(["http://[", "http://a:b@h", "0" * 400, "1e400", "-1",
                                     "*", "\0", "/", "", "6h30", "host:", ":1", "[::1]:0"]))
odd_keys = st.one_of(st.integers(), st.booleans(), st.none(), st.floats(), st.text(max_size=10),
                     st.sampled_from(["password", "Token", "<<", "=", "auth", "~", ""]))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_keys, inner, max_size=4),
    max_leaves=12)


def _put(document: dict[str, Any], slot: str, value: object) -> dict[str, Any]:
    """A copy of ``document`` with ``value`` at ``slot`` (``(top level)`` adds a key)."""
    doc = yaml.safe_load(yaml.safe_dump(document))
    if slot == "(top level)":
        doc["extra"] = value
        return doc
    *parents, last = slot.replace("[0]", ".0").split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return doc


def _dump(document: object) -> bytes:
    """YAML for any document, odd keys included (``allow_unicode`` keeps text as it is)."""
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode()


documents = st.builds(_put, st.just(VALID), st.sampled_from(SLOTS), values).map(_dump)
"""The example config with one value anywhere replaced by anything."""


def _bomb(depth: int, fanout: int, slot: str, merge: bool) -> bytes:
    """``depth`` levels of anchors, each level ``fanout`` aliases of the one below: a few
    hundred bytes that expand to ``fanout ** depth`` nodes once anything walks them."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * fanout) + "]"]
    for level in range(1, depth):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * fanout) + "]")
    top = f"*a{depth - 1}"
    if merge:
        lines.append(f"m: &m {{k: {top}}}")
        top = "{<<: *m}"
    body = yaml.safe_dump(VALID, sort_keys=False)
    return ("\n".join(lines) + "\n" + _at(body, slot, top)).encode()


def _at(body: str, slot: str, value: str) -> str:
    """``body`` with ``value`` (YAML text) at ``slot``, by text, so that aliases survive."""
    doc = yaml.safe_load(body)
    placeholder = "PLACEHOLDER-4711"
    return yaml.safe_dump(_put(doc, slot, placeholder), sort_keys=False).replace(
        placeholder, value)


bombs = st.builds(made(_bomb), st.integers(1, 12), st.integers(2, 10), st.sampled_from(SLOTS),
                  st.booleans())


def _nested(depth: int, opener: str, slot: str) -> bytes:
    closer = {"[": "]", "{": "}", "{a: ": "}", "- ": ""}[opener]
    if opener == "- ":  # block nesting indents each level: the size grows with depth squared
        value = "".join(f"\n{'  ' * i}- " for i in range(min(depth, 2_000))) + "x"
    else:
        value = opener * depth + "x" + closer * depth
    return _at(yaml.safe_dump(VALID, sort_keys=False), slot, value).encode()


nested = st.builds(made(_nested), st.integers(1, 200_000),
                   st.sampled_from(["[", "{", "{a: ", "- "]), st.sampled_from(SLOTS))

tokens = st.sampled_from([
    "marathon:", "registries:", "storage:", "urls:", "host:", "credentials:", "- ", "  ",
    "\n", ": ", "&a ", "*a", "{", "}", "[", "]", ",", "? ", "<<: *a", "'", '"', "|", ">",
    "!!python/object/apply:os.system ['true']", "!!binary aGk=", "!!set {a}", "!!omap",
    "%YAML 1.1\n", "---\n", "...\n", "~", "null", "1e400", "0x1F", "0o17", "2001-12-14",
    ".inf", "-.nan", "yes", "\t", "#", "\\", "\ufeff", "\x85", "\u2028",
])
token_soup = st.lists(tokens, max_size=60).map(lambda t: "".join(t).encode())
raw_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(lambda prefix, doc: prefix + doc,
              st.sampled_from([b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf", b"\x00", b"\xc3"]),
              st.just(_dump(VALID))),
    st.just(_dump(VALID)).map(lambda d: d.decode().encode("utf-16")),
)

KNOWN_CRASHES = {
    "not UTF-8": b"\x80",
    "integer key": b"marathon: {0: null}\n",
    "keys of mixed types": b"marathon: {null: 1, true: 2}\n",
    "URL that urlsplit refuses": _dump(_put(VALID, "marathon.urls", ["http://["])),
    "nesting 500 deep": _nested(500, "[", "(top level)"),
    "alias bomb, 10 levels of 7": _bomb(10, 7, "marathon", merge=False),
}
"""Minimal inputs these targets found on which ``load_settings`` once raised something else
than ``ConfigError`` or took unbounded time or memory: kept as regressions."""


class TestConfigFiles:
    @fuzz_settings(quick=40, full=3_000)
    @given(documents)
    def test_any_value_anywhere_loads_or_raises_config_error(self, sandbox: Sandbox,
                                                              raw: bytes) -> None:
        """The example config with any value at any place loads or raises ``ConfigError``."""
        count("config: values anywhere")
        check(sandbox, raw)

    @fuzz_settings(quick=20, full=1_500)
    @given(bombs)
    def test_alias_bombs_are_bounded(self, sandbox: Sandbox, raw: bytes) -> None:
        """Aliases that expand exponentially fail fast with ``ConfigError`` or load."""
        count("config: alias bombs")
        check(sandbox, raw)

    @fuzz_settings(quick=20, full=1_500)
    @given(nested)
    def test_deep_nesting_is_bounded(self, sandbox: Sandbox, raw: bytes) -> None:
        """Flow collections nested up to 200,000 deep (block ones 2,000) load or raise
        ``ConfigError``."""
        count("config: deep nesting")
        check(sandbox, raw)

    @fuzz_settings(quick=40, full=4_000)
    @given(st.one_of(token_soup, raw_bytes))
    def test_random_yaml_and_bytes_load_or_raise_config_error(self, sandbox: Sandbox,
                                                               raw: bytes) -> None:
        """Token soup, random text and bytes in odd encodings raise ``ConfigError``."""
        count("config: random yaml")
        check(sandbox, raw)

    @pytest.mark.parametrize("raw", KNOWN_CRASHES.values(), ids=KNOWN_CRASHES.keys())
    def test_known_crash_raises_config_error(self, sandbox: Sandbox, raw: bytes) -> None:
        """Each input the targets found loads, or raises ``ConfigError`` in bounded time."""
        check(sandbox, raw)


class TestSandbox:
    def test_runaway_call_times_out_and_the_next_gets_a_fresh_child(self) -> None:
        """A call that never returns is one ``timed out`` outcome; the next call still runs."""
        box = Sandbox(headroom_bytes=HEADROOM, seconds=0.5, warm="os")
        try:
            assert box.run(_spin).kind == "timed out"
            assert box.run(os.getpid).kind == "returned"
        finally:
            box.close()

    def test_allocation_over_the_cap_is_reported_not_fatal(self) -> None:
        """A call that allocates past the cap raises ``MemoryError`` in the child, not here."""
        box = Sandbox(headroom_bytes=64 << 20, seconds=10, warm="os")
        try:
            outcome = box.run(_allocate, 256 << 20)
            assert (outcome.kind, outcome.summary.split(":")[0]) == ("raised", "MemoryError")
        finally:
            box.close()


def _spin() -> None:
    while True:
        pass


def _allocate(size: int) -> int:
    return len(bytearray(size))
