"""What every part of the simulator shares: JSON encoding, Marathon's timestamps, app ids;
``ApiError`` and the error bodies Marathon answers."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

Json = dict[str, Any]
Scheduler = Callable[[float, Callable[[], object]], None]
"""``schedule(delay_seconds, callback)``: how deployments end and backoffs expire on their own."""

DEFAULT_VERSION: Final = "1.10.26"
LOCAL: Final = "127.0.0.1"

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""Compact JSON, as Marathon's Play writer sends it."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=4)
def _second(epoch_second: int) -> str:
    return datetime.fromtimestamp(epoch_second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def iso(moment: datetime) -> str:
    """Marathon's timestamp format: UTC, milliseconds, ``Z`` (every event needs one: cached)."""
    return f"{_second(math.floor(moment.timestamp()))}{moment.microsecond // 1000:03d}Z"


def canonical(app_id: str) -> str:
    """``foo/bar/`` and ``/foo/bar`` name the same app."""
    return "/" + app_id.strip("/")


class ApiError(Exception):
    """What Marathon answers instead of success: an HTTP status and its JSON body."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(f"{status} {body.get('message', '')}")
        self.status = status
        self.body = body


def no_leader() -> ApiError:
    return ApiError(503, {"message": "Could not determine the current leader"})


def not_found(app_id: str) -> ApiError:
    return ApiError(404, {"message": f"App '{app_id}' does not exist"})


def invalid_json(path: str, error: str) -> ApiError:
    return ApiError(422, {"message": "Invalid JSON",
                          "details": [{"path": path, "errors": [error]}]})


def not_valid(path: str, error: str) -> ApiError:
    return ApiError(422, {"message": "Object is not valid",
                          "details": [{"path": path, "errors": [error]}]})
