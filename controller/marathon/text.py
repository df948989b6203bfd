"""What an answer from Marathon holds, read without trusting it: JSON that may be broken or
nested too deep, a JSON value's kind in words, and text made fit for a message."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_MESSAGE", "NOT_JSON", "json_value", "kind_of", "shown"]

MAX_MESSAGE = 256
NOT_JSON: Any = object()


def json_value(body: bytes | memoryview) -> Any:
    """The JSON value, or ``NOT_JSON``: a body nested too deep is as unreadable as a broken one."""
    try:
        return json.loads(body if isinstance(body, bytes) else body.tobytes())
    except (ValueError, RecursionError):
        return NOT_JSON


def kind_of(value: Any) -> str:
    """What a JSON value is, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def shown(text: str) -> str:
    """Text from a response made fit for a message: printable and cut short."""
    return "".join(c if c.isprintable() else "?" for c in text[:MAX_MESSAGE])
