"""Which failed tasks failed because their Docker image could not be pulled, and why.

Marathon reports a failed launch as a ``status_update_event`` whose ``taskStatus`` is
``TASK_FAILED`` or ``TASK_ERROR`` and whose ``message`` is Mesos's free text. ``classify`` reads
that text and answers with one of a small, closed set of reasons (a metric label), the image
reference and its registry, or ``None`` when the task failed for another reason (the command
exited, the container ran out of memory, the sandbox fetch failed).

Only two shapes of message are pull failures (``docs/pull-failure-messages.md`` lists every
pattern with its source and versions):

* the Docker containerizer quotes the ``docker pull`` command it ran, then Docker's stderr:
  ``Failed to run 'docker -H unix:///var/run/docker.sock pull IMAGE': exited with status 1;
  stderr='…'`` (Mesos 1.0 and later) or ``Failed to 'docker … pull IMAGE': exit status = … stderr
  = …`` (Mesos 0.23 to 0.28; older agents did not pass the error on); the image comes from the
  quoted command, never from Docker's text;
* the Mesos containerizer's (UCR) Docker fetcher names the registry request that failed
  (``Unexpected HTTP response '401 Unauthorized' when trying to get the manifest``, ``Failed to
  perform 'curl' for 'https://REGISTRY/v2/NAME/manifests/REF': curl: (6) …``) or says how it
  could not answer the registry's login challenge (``Got unexpected BASIC Authorization
  response status: 401 Unauthorized from URL``); its messages name no image, except in a
  registry API URL.

The reason is decided from the failure's own text, checked in a fixed order: rate limiting,
the local Docker daemon (``other``), the network, authentication, a missing image, anything else
(``other``). The order matters where texts overlap: a proxy's ``407 Proxy Authentication
Required`` is a network problem, and Docker's ``pull access denied …, repository does not exist
or may require 'docker login'`` is ``auth`` even though it also says "does not exist", because
the registry refused access (Docker Hub answers the same for a missing repository, so the
operator's first check is the credentials; the notes explain).

Pure: no I/O, no logging, no clock. The message is cut to ``MESSAGE_LIMIT`` characters before
anything else; matching is substring search plus patterns that cannot backtrack (a URL, an
escaped name between one-character lookarounds, a bare ``denied``). The answer holds only an
image reference and a registry host that ``controller.reference`` accepts, never other text from
the message (which can quote signed URLs or a credential helper's output).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

import msgspec

from controller.model import AppId
from controller.reference import (
    ImageReference,
    InvalidReferenceError,
    normalize_registry_host,
    parse_image,
)

__all__ = [
    "FAILED_TASK_STATES",
    "MESSAGE_LIMIT",
    "PULL_FAILURE_REASONS",
    "SUMMARY_LIMIT",
    "FailedPull",
    "PullFailure",
    "PullFailureReason",
    "classify",
    "classify_status_update",
    "failed_pull",
    "may_report_failed_task",
    "summary",
]

PullFailureReason = Literal["auth", "not_found", "rate_limited", "network", "other"]
"""Why a pull failed; small and closed, so it can label a metric."""

PULL_FAILURE_REASONS: Final[tuple[PullFailureReason, ...]] = get_args(PullFailureReason)
"""Every reason, in a fixed order (to set each metric label to zero at start-up)."""

FAILED_TASK_STATES: Final = frozenset({"TASK_FAILED", "TASK_ERROR"})
"""The task states in which Mesos reports a launch that failed (a pull failure among them)."""

MESSAGE_LIMIT: Final = 64 * 1024
"""Characters of a message that are read; a pull failure names its cause well before this."""

SUMMARY_LIMIT: Final = 200
"""Characters of a message's summary (``summary``): enough for Docker's error line."""

_COMMAND_LIMIT = 2048
"""Longest quoted ``docker pull`` command looked for: docker path, socket and image fit easily."""

_DOCKER_COMMAND_PREFIXES = ("Failed to run '", "Failed to '")

_UCR_MARKERS = (
    "when trying to get the manifest",
    "when trying to download the blob",
    "when trying to download blob",
    "when trying to GET '",
    "when fetching a blob",
    "Failed to perform 'curl'",
    "Failed to decode HTTP responses",
    "header WWW-Authenticate",
    # The fetcher's answers to a registry's 401 (getAuthHeader, getBearerAuthParam) and to its
    # token service's body, across Mesos versions (docs/pull-failure-messages.md, rows ucr-…).
    "WWW-Authenticate header",
    "WWW-Authorization header is not found",
    "Not a Bearer authentication challenge",
    "BASIC Authorization response status",
    "auth-scheme: ",
    "token in JSON object",
    "Parsing the JSON object failed",
)

_URL = re.compile(r"https?://\S+")
"""A URL and whatever sticks to it; removed before matching so that a path cannot vote."""

_URL_PARTS = re.compile(r"(https?://)(?:[^/@\s'\"]*@)?([^/?#@\s'\"]*)[^\s'\"]*")
"""A URL in a summary: its scheme and host are kept; user info, path and query are not."""
_STDERR_MARKERS = ("stderr='", "stderr = ")
_LAUNCH_PREFIX = "Failed to launch container: "
_HELPER_OUTPUT = ", out: "
"""docker-credential-helpers' ``error getting credentials - err: %v, out: `%s```: the output
of a credential helper, which may be anything, follows."""

# Where an image's name stands alone in Docker's text: not inside a longer name.
_BEFORE_NAME = r"(?<![a-z0-9._/-])"
_AFTER_REFERENCE = r"(?![a-z0-9._-])"
_AFTER_NAME = r"(?=[\s,']|$)"

# Phrases that contain a marker of another reason without meaning it.
_MISLEADING = (
    "expecting a '401 unauthorized' response",  # UCR states what it expected, then what it got
    "permission denied",  # a local file or socket, not the registry's ``denied:`` code
)

_BARE_DENIED = re.compile(r"(?:^|[:\"\n])[ \t]{0,3}denied(?![\w-])")
"""The registry error code ``DENIED`` printed alone (GHCR: ``Error response from daemon:
denied``, ``…": denied``, ``error from registry: denied``): the word right after a colon, a
quote or a line break, and not followed by another letter. ``permission denied``, ``access is
denied`` and ``denied: …`` (a marker of its own) do not match."""

# Lower-case markers (substrings, or a pattern), first matching rule wins: a 429 can mention
# authenticating, a dead local daemon is not the registry's network, a proxy's 407 says
# "authentication required", and "pull access denied …, repository does not exist" must be
# ``auth`` before "not found" is seen.
_RULES: tuple[tuple[PullFailureReason, tuple[str | re.Pattern[str], ...]], ...] = (
    ("rate_limited", ("toomanyrequests", "too many requests", "response '429'")),
    ("other", ("docker daemon", "dial unix ")),
    ("network", (
        "dial tcp", "i/o timeout", "tls handshake timeout", "no such host", "server misbehaving",
        "connection refused", "connection reset", "network is unreachable", "no route to host",
        "x509:", "tls:", "net/http:", "server gave http response to https client",
        "proxyconnect", "proxy authentication required", "deadline exceeded",
        "could not resolve host", "could not resolve proxy", "failed to connect to",
        "timed out", "ssl certificate problem", "ssl connect error",
    )),
    ("auth", (
        "no basic auth credentials", "unauthorized", "authentication required",
        "authentication is required", "pull access denied", "no pull access", "denied: ",
        _BARE_DENIED, "403 forbidden", "status 401", "status 403", "http 401", "http 403",
        "authorization server did not include a token", "error getting credentials",
        "empty www-authenticate header", "www-authorization header is not found",
        "basic authorization response status", "auth-scheme: basic",
    )),
    ("not_found", ("not found", "manifest unknown", "name unknown", "blob unknown")),
)


class PullFailure(msgspec.Struct, frozen=True, kw_only=True):
    """An image pull that failed: why, and which image on which registry when the text says."""

    reason: PullFailureReason
    image: str | None = None
    """The image as the pull command named it (Mesos adds ``:latest`` to an untagged one)."""
    registry: str | None = None
    """Lowercase ``host[:port]``; ``docker.io`` for Docker Hub, as ``controller.reference``."""


def classify(message: str) -> PullFailure | None:
    """The pull failure a failed task's ``message`` reports, or ``None`` if it reports another."""
    text = message[:MESSAGE_LIMIT]
    command = _docker_pull_command(text)
    if command is not None:
        image, cause = command
        reference = _parse(image)
        if reference is None:
            return PullFailure(reason=_reason(cause))
        return PullFailure(reason=_reason(_without_image(cause, image, reference)),
                           image=image, registry=reference.registry)
    if any(marker in text for marker in _UCR_MARKERS):
        named, registry = _registry_request(text)
        return PullFailure(reason=_reason(text), image=named, registry=registry)
    return None


def classify_status_update(event: Mapping[str, object]) -> PullFailure | None:
    """The pull failure a Marathon ``status_update_event`` payload reports, if any.

    Only a failed task (``FAILED_TASK_STATES``) with a text message can report one; any other
    payload, however malformed, answers ``None``.
    """
    state, message = event.get("taskStatus"), event.get("message")
    if not (isinstance(state, str) and state in FAILED_TASK_STATES and isinstance(message, str)):
        return None
    return classify(message)


class FailedPull(msgspec.Struct, frozen=True, kw_only=True):
    """A task of ``app_id`` that failed to pull its image, as a ``status_update_event`` said."""

    app_id: AppId
    task_id: str | None
    """Marathon's task id, if the event carried a short enough one."""
    version: str | None
    """The app version the task was launched from (the event's ``version``), if it said."""
    failure: PullFailure
    summary: str
    """What the message says, fit to show (``summary``)."""


_MAX_ID = 1024
"""Longer app or task ids are not Marathon's (``AppId`` path segments are short)."""


def may_report_failed_task(data: str) -> bool:
    """Whether a ``status_update_event``'s undecoded JSON may hold a failed task state.

    ``False`` only when it certainly does not: a JSON text holds the state's name verbatim
    unless a ``\\u`` escape spells it, so any such escape answers ``True``. This spares
    decoding the status updates of running tasks, which make most of a busy stream.
    """
    return "TASK_FAILED" in data or "TASK_ERROR" in data or "\\u" in data


def failed_pull(event: Mapping[str, object]) -> FailedPull | None:
    """The pull failure a ``status_update_event`` payload reports for its app, if any."""
    app_id, task_id, version = event.get("appId"), event.get("taskId"), event.get("version")
    if not (isinstance(app_id, str) and app_id.startswith("/") and len(app_id) <= _MAX_ID):
        return None
    failure = classify_status_update(event)
    if failure is None:
        return None
    message = event.get("message")
    return FailedPull(
        app_id=AppId(app_id),
        task_id=task_id if isinstance(task_id, str) and len(task_id) <= _MAX_ID else None,
        version=version if isinstance(version, str) and len(version) <= _MAX_ID else None,
        failure=failure, summary=summary(message if isinstance(message, str) else ""))


def summary(message: str) -> str:
    """One line of a pull failure's message that an operator can be shown.

    Docker's error line when the message quotes Docker's stderr (else the message without
    Mesos's launch prefix), cut before a credential helper's output, with each URL cut to its
    scheme and host (a signed URL's query, a path, user info go), printable, and at most
    ``SUMMARY_LIMIT`` characters. Pure and linear: the text is cut short before it is read.
    """
    text = message[:MESSAGE_LIMIT]
    for marker in _STDERR_MARKERS:
        at = text.find(marker)
        if at != -1 and text[at + len(marker):].strip(" '\r\n"):
            text = text[at + len(marker):]
            break
    else:
        text = text.removeprefix(_LAUNCH_PREFIX)
    text = text.strip(" '\r\n")[:4 * SUMMARY_LIMIT]
    text = text.split("\n", 1)[0].split("\r", 1)[0].partition(_HELPER_OUTPUT)[0]
    text = _URL_PARTS.sub(_origin, text)
    text = "".join(c if c.isprintable() else "?" for c in text.rstrip(" '"))
    return text if len(text) <= SUMMARY_LIMIT else text[:SUMMARY_LIMIT - 1] + "\u2026"


def _origin(match: re.Match[str]) -> str:
    """The URL's scheme and host, ``/…`` for whatever followed, and the punctuation after it
    (Docker writes ``Get https://…/manifests/1.0: unauthorized``)."""
    rest = match[0][match.end(2) - match.start():]
    kept = rest.rstrip(":,;.)")
    return match[1] + match[2] + ("/\u2026" if kept else "") + rest[len(kept):]


def _docker_pull_command(text: str) -> tuple[str, str] | None:
    """The image of the first quoted ``docker … pull IMAGE`` command, and the text after it.

    Mesos quotes ``DOCKER -H SOCKET pull IMAGE`` (0.25 and later) or ``DOCKER pull IMAGE``,
    where DOCKER is the agent's ``--docker`` path; another program's ``pull`` is not a match.
    """
    for prefix in _DOCKER_COMMAND_PREFIXES:
        start = text.find(prefix)
        while start != -1:
            begin = start + len(prefix)
            end = text.find("'", begin, begin + _COMMAND_LIMIT)
            if end != -1:
                words = text[begin:end].split()
                if len(words) >= 3 and words[-2] == "pull" and (
                        words[1] == "-H" or "docker" in words[0].rpartition("/")[2]):
                    return words[-1], text[end + 1:]
            start = text.find(prefix, begin)
    return None


def _parse(image: str) -> ImageReference | None:
    try:
        return parse_image(image)
    except InvalidReferenceError:
        return None


def _without_image(cause: str, image: str, reference: ImageReference) -> str:
    """``cause`` without the image's names, which Docker echoes and which must not vote.

    ``manifest for acme/mtls:1.0 not found`` holds ``tls:``; the whole reference goes wherever it
    stands alone, a bare repository name only where no ``:`` follows it (``tls: handshake
    failure`` keeps its marker even for an image called ``tls``).
    """
    written = image.partition("@")[0]
    if reference.tag is not None:
        written = written.rpartition(":")[0]
    bare = ImageReference(registry=reference.registry, path=reference.path)
    references = {image, reference.familiar, str(reference)}
    names = {written, bare.familiar, bare.name}
    text = cause.lower()
    for spelling in sorted(references | names, key=len, reverse=True):
        follow = _AFTER_REFERENCE if spelling in references else _AFTER_NAME
        text = re.sub(_BEFORE_NAME + re.escape(spelling.lower()) + follow, " ", text)
    return text


def _reason(cause: str) -> PullFailureReason:
    """The first reason whose markers the cause holds, once URLs and misleading phrases are out."""
    text = _URL.sub(" ", cause.lower())
    for noise in _MISLEADING:
        text = text.replace(noise, " ")
    for reason, markers in _RULES:
        if any(_holds(text, marker) for marker in markers):
            return reason
    return "other"


def _holds(text: str, marker: str | re.Pattern[str]) -> bool:
    return marker in text if isinstance(marker, str) else marker.search(text) is not None


def _registry_request(text: str) -> tuple[str | None, str | None]:
    """Image and registry from the first Registry API (``/v2/``) URL in a UCR message.

    A manifest URL names the image (``/v2/NAME/manifests/REF``); a blob URL only the registry.
    A token server's URL names neither: it is not the registry.
    """
    for match in _URL.finditer(text):
        try:
            parts = urlsplit(match.group().rstrip("'\":,;)"))
        except ValueError:  # e.g. an unclosed IPv6 bracket: not a registry's URL
            continue
        if not parts.path.startswith("/v2/"):
            continue
        try:
            registry = normalize_registry_host(parts.netloc.rpartition("@")[2])
        except InvalidReferenceError:
            continue
        name, manifests, ref = parts.path[len("/v2/"):].rpartition("/manifests/")
        if not manifests:
            return None, registry
        reference = _parse(f"{registry}/{name}{'@' if ':' in ref else ':'}{ref}")
        return (None if reference is None else reference.familiar), registry
    return None, None
