"""An answer's status and Marathon's error body as ``controller.errors``: which 404 means
"gone", which 403 is the running-deployment limit, what a 409 names, and ``Retry-After``."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime
from typing import Any

from controller.errors import (
    MarathonConflict,
    MarathonDeploymentLimit,
    MarathonNotFound,
    MarathonRejected,
    MarathonUnavailable,
)
from controller.marathon.body import Answer
from controller.marathon.text import MAX_MESSAGE, json_value

__all__ = ["NOT_QUEUED", "error_body", "raise_for_status"]

_MAX_RETRY_AFTER = 300.0
# Marathon's own not-found answer (``{"message": "App '/x' does not exist"}``, optionally
# `` in version …``): mesosphere/marathon src/main/scala/mesosphere/marathon/Exception.scala:16
# and api/RestResource.scala:57 at 90619da7. A proxy's or another server's 404 never says it.
_APP_NOT_FOUND = re.compile(r"App '[^']*' does not exist")
# Marathon's answer to DELETE /v2/queue/{id}/delay for an app with nothing to launch (a reset
# answers 204, though queue.raml says 200; docs/marathon.md §6):
# 404 {"message": "Application /x not found in tasks queue."}, mesosphere/marathon
# src/main/scala/mesosphere/marathon/api/v2/QueueResource.scala (1.x).
NOT_QUEUED = re.compile(r"Application \S* not found in tasks queue")
# HTTP 403 when --max_running_deployments is reached (Marathon >= 1.6.486, docs/marathon.md §6).
# The text, unchanged since it was added (3e49e3fe, #6178), at mesosphere/marathon 90619da7
# src/main/scala/mesosphere/marathon/Exception.scala:39-44:
#   s"Max number ($maxNum) of running deployments is achieved. Wait for existing deployments to
#   complete or cancel one" + "using force=true parameter. You can increase max deployment
#   number by using --max_running_deployments parameter " + "but be advised that …"
# mapped to 403 {"message": …} by api/MarathonExceptionMapper.scala:113. Either half matches,
# whatever the spacing, case or number.
_DEPLOYMENT_LIMIT = re.compile(
    r"max\s+number\s*(\(\s*\d+\s*\)\s*)?of\s+running\s+deployments|max_running_deployments",
    re.IGNORECASE)


def error_body(body: bytes | memoryview) -> dict[str, Any] | None:
    """A Marathon error body (``{"message": "…", …}``, docs/marathon.md §1.7), or None for
    anything else."""
    data = json_value(body)
    return data if isinstance(data, dict) and isinstance(data.get("message"), str) else None


def _message(status: int, error: dict[str, Any] | None) -> str:
    """Marathon's own message, cut short; never the raw body of an unknown payload."""
    if error is None:
        return f"HTTP {status}"
    text = str(error["message"])
    details = error.get("details")
    if isinstance(details, list):
        parts = [f"{d.get('path')}: {_joined(d.get('errors'))}" for d in details
                 if isinstance(d, dict)]
        text += " (" + ", ".join(parts) + ")"
    return text[:MAX_MESSAGE]


def _joined(errors: Any) -> str:
    return "; ".join(map(str, errors)) if isinstance(errors, list) else ""


def _deployment_ids(error: dict[str, Any] | None) -> tuple[str, ...]:
    """The ids a 409 names as locking the app (docs/marathon.md §1.6); anything else is skipped."""
    deployments = error.get("deployments") if error else None
    if not isinstance(deployments, list):
        return ()
    return tuple(d["id"] for d in deployments
                 if isinstance(d, dict) and isinstance(d.get("id"), str))


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` (delay-seconds or an HTTP-date) as seconds from now, at most 300."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value) if len(value) <= 12 else _MAX_RETRY_AFTER
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def raise_for_status(method: str, path: str, answer: Answer) -> None:
    """Map an error answer onto ``controller.errors``; a success passes.

    A 404 is "the app is gone" only in Marathon's own words: a proxy's or a wrong host's 404
    must not make the controller forget an app. A 403 from the running-deployment limit,
    a 429 and a 5xx are transient; 429 and 503 carry the server's ``Retry-After``.
    """
    status = answer.status
    if status < 400:
        return
    request = f"{method} {path}"
    error = error_body(answer.body)
    said = str(error["message"]) if error else ""
    message = _message(status, error)
    if status == 404:
        if _APP_NOT_FOUND.match(said):
            raise MarathonNotFound(message)
        raise MarathonUnavailable(f"{request}: {answer.where} answered 404 but is not Marathon "
                                  "(no Marathon error body)", status=404)
    if status == 409:
        raise MarathonConflict(message, deployment_ids=_deployment_ids(error))
    if status == 403 and _DEPLOYMENT_LIMIT.search(said):
        raise MarathonDeploymentLimit(f"{request}: 403 {message}")
    if status == 429 or status >= 500:
        wait = _retry_after(answer.headers.get("Retry-After")) if status in (429, 503) else None
        raise MarathonUnavailable(f"{request}: {status} {message}", status=status,
                                  retry_after=wait)
    if status == 401 and not answer.authorized:
        message += " (Marathon asks for credentials: set marathon.auth)"
    raise MarathonRejected(f"{request}: {status} {message}", status=status)
