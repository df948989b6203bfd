"""Finds a secret in captured output in every form it could leak in, without ever printing it.

A secret can leak raw, JSON-escaped, URL-encoded, or base64-encoded: as Docker encodes
``username:password`` in ``auth``, or as part of any longer base64 stream. In a stream the
secret may start at any byte offset; base64 turns 3 bytes into 4 characters, so each of the 3
alignments gives a different text. For each alignment the characters made only of the
secret's own bytes are the same wherever the secret sits, and that core is what is searched.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

__all__ = ["KnownSecret", "encodings", "find_leaks"]

_BASE64 = {"base64": base64.b64encode, "base64url": base64.urlsafe_b64encode}


@dataclass(frozen=True, slots=True)
class KnownSecret:
    """A secret the test planted; ``username`` when it is used in a ``user:password`` pair."""

    value: str
    username: str | None = None


def _aligned_core(raw: bytes, offset: int, encode: Callable[[bytes], bytes]) -> bytes:
    """The base64 characters of ``raw`` that do not depend on its neighbours when it starts
    ``offset`` bytes (mod 3) into a stream: whole 3-byte groups of the secret's bytes only."""
    padded = b"\0" * offset + raw
    start = 3 if offset else 0
    end = len(padded) - len(padded) % 3
    return encode(padded[start:end])


def encodings(secret: KnownSecret) -> dict[str, bytes]:
    """Every searched form of ``secret``, by name (``base64@1``: starting 1 byte into a group)."""
    raw = secret.value.encode()
    quoted = quote(secret.value, safe="")
    forms = {
        "raw": raw,
        "json-escaped": json.dumps(secret.value)[1:-1].encode(),
        "url-encoded": quoted.encode(),
        "url-encoded (lowercase hex)": _lower_hex_escapes(quoted).encode(),
        "url-encoded (form)": quote_plus(secret.value).encode(),
    }
    for name, encode in _BASE64.items():
        for offset in range(3):
            forms[f"{name}@{offset}"] = _aligned_core(raw, offset, encode)
        if secret.username is not None:
            forms[f"{name}(username:password)"] = encode(f"{secret.username}:{secret.value}"
                                                         .encode())
    return forms


def _lower_hex_escapes(quoted: str) -> str:
    parts = quoted.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def find_leaks(captured: str | bytes, secrets: Mapping[str, KnownSecret], *, where: str
               ) -> list[str]:
    """One line per secret form found in ``captured``: names only, never the secret."""
    data = captured.encode(errors="surrogateescape") if isinstance(captured, str) else captured
    leaks = []
    for name, secret in secrets.items():
        seen: set[bytes] = set()
        for form, encoded in encodings(secret).items():
            if encoded and encoded not in seen and encoded in data:
                leaks.append(f"{where}: {name} appears {form}")
            seen.add(encoded)
    return leaks
