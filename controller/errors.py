"""The controller's exception hierarchy.

Adapters classify failures into these; the core never sees aiohttp or botocore exceptions.

    ControllerError
    ├── ConfigError                 bad configuration; start-up only, exit code 2
    ├── RequestRecorded             a dry run's adapter recorded a request instead of making it
    │   ├── WriteRecorded           a write (Marathon, storage): the engine says "would ..."
    │   └── ContactRecorded         a registry login or image check: nothing was asked
    ├── TransientError              requeue the key with backoff
    │   ├── MarathonUnavailable     connection failure, timeout, 5xx, 429, or an answer that is
    │   │   │                       not Marathon's (a proxy's 404, a malformed or oversized body)
    │   │   └── MarathonDeploymentLimit  403: --max_running_deployments is reached
    │   ├── MarathonConflict        409: the app is locked by a deployment
    │   ├── StorageError            shared storage could not be read or written
    │   │   └── InvalidBundleError  the served bundle is not one we publish: publish it again
    │   ├── CredentialError         a credential source failed (retried: sources recover)
    │   └── NotLeaderError          leadership was lost before a write
    └── TerminalError               logged and counted, never retried for the same input
        ├── MarathonRejected        401, 403, 404, 422 and other 4xx, with Marathon's message
        │   └── MarathonNotFound    404 with Marathon's own "does not exist": the app is gone
        └── InvalidAppError         the app definition cannot be planned (e.g. malformed image)

Messages never carry secrets: adapters cut response bodies short and only keep Marathon's
``message`` field.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ContactRecorded",
    "ControllerError",
    "CredentialError",
    "InvalidAppError",
    "InvalidBundleError",
    "MarathonConflict",
    "MarathonDeploymentLimit",
    "MarathonError",
    "MarathonNotFound",
    "MarathonRejected",
    "MarathonUnavailable",
    "NotLeaderError",
    "RequestRecorded",
    "StorageError",
    "TerminalError",
    "TransientError",
    "WriteRecorded",
]


class ControllerError(Exception):
    """Base of every error the controller raises on purpose."""


class ConfigError(ControllerError):
    """The configuration is invalid; ``problems`` lists every problem with its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class RequestRecorded(ControllerError):
    """A dry run's adapter (``controller.dryrun``) recorded the request and did not make it.

    Neither transient nor terminal, and no Marathon or storage error, so no handler retries or
    swallows it by accident: the engine catches it where it makes the request and says what it
    would have done. The message names the request (``PATCH /v2/apps/web``), never a secret.
    """


class WriteRecorded(RequestRecorded):
    """A write (an app update, a launch delay reset, a bundle, a note) was only recorded."""


class ContactRecorded(RequestRecorded):
    """A request to a registry (a login, an image check) was only recorded."""


class TransientError(ControllerError):
    """A failure worth retrying later with backoff."""


class TerminalError(ControllerError):
    """A failure that retrying the same input will not fix."""


class MarathonError(ControllerError):
    """Marathon answered with an error, or could not be reached (``status`` is 0 then)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        self.status = status
        super().__init__(message)


class MarathonUnavailable(MarathonError, TransientError):
    """Marathon could not be reached, timed out, or answered 5xx, 429 or something not Marathon's.

    ``retry_after`` is the wait in seconds the server asked for (``Retry-After``, bounded), or
    ``None``: a work queue should not retry sooner.
    """

    def __init__(self, message: str, *, status: int = 0, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status)


class MarathonDeploymentLimit(MarathonUnavailable):
    """403: ``--max_running_deployments`` are running; retry once some end, never force."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=403)


class MarathonConflict(MarathonError, TransientError):
    """409: the app is locked by running deployments; retry once they end, never force."""

    def __init__(self, message: str, *, deployment_ids: tuple[str, ...] = ()) -> None:
        self.deployment_ids = deployment_ids
        super().__init__(message, status=409)


class MarathonRejected(MarathonError, TerminalError):
    """Marathon refused the request (401, 403, 404, 422 …); carries Marathon's message."""


class MarathonNotFound(MarathonRejected):
    """404 with Marathon's own not-found message: the app does not exist (any more)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=404)


class StorageError(TransientError):
    """Shared storage failed; the previous bundle stays in place."""


class InvalidBundleError(StorageError):
    """The stored bytes are missing, unreadable, or not an archive we would write."""


class CredentialError(TransientError):
    """A credential source failed; the last good bundle stays in place.

    ``retry_after`` is set when the next try should come sooner than the backoff would bring
    it (a refused password is read again often, to publish the operator's fix quickly)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class NotLeaderError(TransientError):
    """This replica is not (or no longer) the leader, so it must not write."""


class InvalidAppError(TerminalError):
    """The app definition cannot be planned, e.g. its image reference is malformed."""
