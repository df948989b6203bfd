"""The status page for people (``GET /``): the ``/status`` document rendered as HTML.

Pure: a snapshot in, a page out. Rendered on the server with no script and no external asset
(an ops port is often reached through a tunnel with nothing else), and it refreshes itself.
It shows only what ``/status`` holds, which is never a secret; every value is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["render_page"]

REFRESH_SECONDS = 10
_STATE_ORDER = ("failed", "conflict", "locked", "pending", "converged", "skipped")
_CLASS = {None: "", True: "ok", False: "bad"}

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f23}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}
th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#57606a}
code{font-size:.95em}
"""


def _cell(value: object) -> str:
    if value is None or value == "":
        return '<td class="muted">-</td>'
    return f"<td>{escape(str(value))}</td>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> str:
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _when(iso: str | None) -> str | None:
    """An ISO time, readable: ``2026-12-01 06:00:01 UTC`` (times are UTC)."""
    return f"{iso[:19].replace('T', ' ')} UTC" if iso else None


def _age(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def _login(registry: Mapping[str, Any]) -> str:
    """The last login with the registry, in words."""
    login = registry.get("login")
    if login is None:
        return "off" if registry.get("verify", "off") == "off" else "not tried yet"
    return f"{login['result']} ({_when(login.get('at'))}): {login.get('detail')}"


def _registries(registries: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, r in registries.items():
        if r.get("credentials_rejected"):
            result = ("credentials rejected: the registry refuses the source's credential; "
                      "the last good bundle stays")
        elif r.get("damage"):
            result = f"damaged: {r['damage']}"
        elif r.get("failures"):
            result = f"failing ({r['failures']}x): {r.get('last_error')}"
        else:
            result = "ok" if r.get("sha256") else "no bundle yet"
        rows.append((name, (r.get("sha256") or "")[:12], _age(r.get("age_seconds")),
                     _when(r.get("expires_at")) or "never expires", _when(r.get("refresh_at")),
                     result, _login(r)))
    return _table(("registry", "bundle sha256", "age", "expires", "next refresh",
                   "last refresh", "last login"), rows, "No registry is configured.")


def _apps(apps: Mapping[str, Mapping[str, Any]], counts: Mapping[str, int]) -> str:
    summary = ", ".join(f"{counts[s]} {s}" for s in _STATE_ORDER if counts.get(s))
    ordered = sorted(apps.items(), key=lambda item: (
        _STATE_ORDER.index(item[1]["state"]) if item[1]["state"] in _STATE_ORDER
        else len(_STATE_ORDER), item[0]))
    rows = [(app_id, a["state"], a.get("registry"), a.get("detail"), a.get("last_error"),
             _pull_failure(a.get("last_pull_failure")), _delay_reset(a.get("last_delay_reset")))
            for app_id, a in ordered]
    return (f"<p>{escape(summary) or 'No app is known yet.'}</p>"
            + _table(("app", "state", "registry", "why", "last error", "last pull failure",
                      "launch delay reset"), rows, ""))


def _pull_failure(failure: Mapping[str, Any] | None) -> str | None:
    """``auth at 2026-12-01 06:00:01 UTC, task web.1: unauthorized: …``."""
    if not failure:
        return None
    task = f", task {failure['task_id']}" if failure.get("task_id") else ""
    return f"{failure['reason']} at {_when(failure['at'])}{task}: {failure.get('message') or '-'}"


def _delay_reset(reset: Mapping[str, Any] | None) -> str | None:
    return f"{reset['result']} at {_when(reset['at'])}" if reset else None


def _header(status: Mapping[str, Any]) -> str:
    ready: Mapping[str, bool] = status.get("ready") or {}
    ready_ok = bool(ready) and all(ready.values())
    stream = bool((status.get("event_stream") or {}).get("connected"))
    queue = status.get("queue") or {}
    facts: list[tuple[str, str, bool | None]] = [
        ("role", "leader" if status.get("leader") else "standby", None),
        ("ready", "yes" if ready_ok else
         "no (" + ", ".join(k for k, v in ready.items() if not v) + ")", ready_ok),
        ("event stream", "connected" if stream else "disconnected", stream),
        ("queue", f"{queue.get('depth', 0)} waiting, {queue.get('processing', 0)} in work"
         if queue else "-", None),
        ("mode", "dry run: writes nothing" if status.get("dry_run") else "writes", None),
    ]
    rows = "".join(
        f"<tr><th>{escape(name)}</th><td class=\"{_CLASS[ok]}\">{escape(value)}</td></tr>"
        for name, value, ok in facts)
    return f"<table>{rows}</table>"


def render_page(status: Mapping[str, Any]) -> str:
    """The whole page for one ``/status`` snapshot."""
    recent = [(_when(e["at"]), e["kind"], e["subject"], e["detail"])
              for e in status.get("recent", [])]
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
        "<title>pullsecret controller</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>marathon-pullsecret-controller</h1>"
        + _header(status)
        + "<h2>Registries</h2>" + _registries(status.get("registries", {}))
        + "<h2>Apps</h2>" + _apps(status.get("apps", {}), status.get("counts", {}))
        + "<h2>Recent writes and failures</h2>"
        + _table(("at", "what", "app or registry", "detail"), recent, "Nothing yet.")
        + f"<p class=\"muted\">Refreshes every {REFRESH_SECONDS} s. JSON: "
          "<a href=\"status\"><code>/status</code></a>, metrics: "
          "<a href=\"metrics\"><code>/metrics</code></a>.</p>"
        "</body></html>")
