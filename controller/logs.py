"""structlog set-up: JSON when stderr is not a terminal, and a redaction backstop for secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Literal, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["configure", "redact_secrets"]

_SECRET_KEY = re.compile(r"(password|passwd|token|secret|authorization|auth|credential)",
                         re.IGNORECASE)
_REDACTED = "***"


def _scrub(value: object) -> object:
    if isinstance(value, MutableMapping):
        return {k: (_REDACTED if _SECRET_KEY.search(str(k)) else _scrub(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact_secrets(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Replace the value of any key that names a secret, at any depth.

    A backstop only: secrets travel as ``model.Secret``, whose ``str`` is ``***`` anyway.
    """
    return {k: (_REDACTED if _SECRET_KEY.search(k) else _scrub(v))
            for k, v in event_dict.items()}


def configure(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto",
              stream: TextIO | None = None) -> None:
    """Configure structlog once, at start-up."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    # Tracebacks never show local variables: a frame may hold a header or a password.
    renderer: Processor = (structlog.processors.JSONRenderer() if use_json
                           else structlog.dev.ConsoleRenderer(
                               colors=out.isatty(),
                               exception_formatter=structlog.dev.plain_traceback))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    rendering: list[Processor] = [renderer]
    if use_json:
        rendering.insert(0, structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False)))
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(out, numeric_level, shared, rendering)


def _route_stdlib_logging(out: TextIO, level: int, shared: list[Processor],
                          rendering: list[Processor]) -> None:
    """Libraries that log through ``logging`` (kazoo, asyncio, botocore) get the same format,
    so a JSON log stays one JSON object a line; their warnings and errors only, unless debug."""
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))

