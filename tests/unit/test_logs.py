"""Logging set-up: secrets stay out of log lines and tracebacks."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from controller.logs import configure

SECRET = "Basic b3BzOmh1bnRlcjI="


pytestmark = pytest.mark.usefixtures("restore_logging")

@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_show_no_local_variables(fmt):
    """A crash logged with its traceback does not print the frames' locals."""
    out = io.StringIO()
    configure("info", fmt, stream=out)

    def fail() -> None:
        headers = {"Authorization": SECRET}
        raise RuntimeError(f"boom with {len(headers)} header")

    try:
        fail()
    except RuntimeError:
        structlog.get_logger().exception("task_crashed", task="events")
    text = out.getvalue()
    assert "task_crashed" in text
    assert "RuntimeError" in text
    assert SECRET not in text


def test_keys_naming_secrets_are_redacted():
    """The backstop processor hides values under secret-looking keys, at any depth."""
    out = io.StringIO()
    configure("info", "json", stream=out)
    structlog.get_logger().info("x", password="p1", nested={"token": "t1", "ok": "visible"})
    line = json.loads(out.getvalue())
    assert (line["password"], line["nested"]["token"], line["nested"]["ok"]) == (
        "***", "***", "visible")


def test_library_logging_is_one_json_object_a_line():
    """kazoo and asyncio log through the standard library: their lines are JSON too."""
    out = io.StringIO()
    configure("info", "json", stream=out)
    logging.getLogger("kazoo.client").warning("Connection dropped: %s", "socket closed")
    logging.getLogger("kazoo.client").info("chatty detail")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert (record["event"], record["logger"], record["level"]) == (
        "Connection dropped: socket closed", "kazoo.client", "warning")
