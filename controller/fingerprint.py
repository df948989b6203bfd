"""Keyed fingerprints of bundles: what may leave the process where a bundle's SHA-256 may not.

A bundle is a deterministic archive of one credential, so the plain SHA-256 of its bytes (or
any unkeyed digest, or a prefix of one) lets whoever sees it test guessed passwords offline:
build the archive for each guess and compare. A fingerprint is HMAC-SHA256 of the bundle's
SHA-256 under a random key made when the process starts and never written anywhere, so it
confirms nothing without the key, yet tells two bundles apart within one process: the bundle
served now from the one published before (``/status``, the page and the publish log lines of
the same process agree). Another replica or a restarted process has another key; what they
agree on is the publish generation, the record's ``created_at`` (and ``leader_epoch``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["fingerprint"]

_KEY = secrets.token_bytes(32)
_HEX_DIGITS = 16
"""64 bits: enough to tell bundles apart, short enough to read."""


def fingerprint(sha256: str, *, key: bytes = _KEY) -> str:
    """The keyed fingerprint of the bundle whose SHA-256 (hex) is ``sha256``."""
    return hmac.new(key, sha256.encode(), hashlib.sha256).hexdigest()[:_HEX_DIGITS]
