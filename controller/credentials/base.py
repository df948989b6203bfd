"""The ``CredentialSource`` port: where a registry's credential comes from, and the helpers its
sources share. Only the wiring (``controller.wiring``) names a source."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Protocol

from controller.boundedread import read_limited
from controller.errors import CredentialError
from controller.model import RegistryCredential

__all__ = ["TOKEN_USERNAME", "CredentialSource", "json_object", "read_secret_text"]

TOKEN_USERNAME = "<token>"  # noqa: S105 - Docker's marker for an identity token


def json_object(raw: str | bytes) -> dict[str, object] | None:
    """The JSON object in ``raw``, or ``None``.

    The decoding error is dropped here rather than chained (even ``from None`` keeps it as
    ``__context__``): ``JSONDecodeError.doc`` holds the whole input, secrets included.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class CredentialSource(Protocol):
    """Yields the current credential of one registry.

    ``expiring`` sources (tokens) are asked only when the bundle is due; the others are cheap
    to read, so they are read on every resync and a changed password shows up within one.
    """

    expiring: bool

    async def fetch(self) -> RegistryCredential: ...


async def read_secret_text(path: Path, what: str, limit: int) -> str:
    """The file's text, at most ``limit`` bytes of it: a wrong path cannot fill memory.

    Errors are raised outside the ``except`` blocks, so none carries the file's bytes along.
    """
    try:
        data = await asyncio.to_thread(read_limited, path, limit)
    except OSError as e:
        problem = e.strerror or "cannot be read"
    else:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            problem = "not UTF-8 text"
    raise CredentialError(f"cannot read {what} {path}: {problem}")
