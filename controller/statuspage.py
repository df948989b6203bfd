"""The status page for people (``GET /``): one ``/status`` document rendered as HTML.

Pure: a document in, a page out. Rendered on the server with no script and no external asset
(an ops port is often reached through a tunnel with nothing else); its one inline style is
allowed by hash in the Content-Security-Policy (``STYLE_SOURCE``). It shows only what
``/status`` holds, which is never a secret; every value is escaped.

What needs a person comes first, in words (never by colour alone), and the headline is green
only when nothing does. A standby says so, and that the leader does the work.

It does not refresh itself: a timed refresh is one the reader cannot pause (WCAG 2.2.1), it
would move a screen reader and the scroll position every few seconds, and every open tab
would cost the controller a page of 500 apps each time. A "Reload" link and the time the page
was made stand in its place.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from controller.statusbook import DEFAULT_PAGE, is_problem, state_rank

__all__ = ["STYLE_SOURCE", "render_page"]

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
header,main,footer{padding:0 1rem;max-width:90rem}
h1{font-size:1.35rem;margin:1rem 0 .5rem}h2{font-size:1.15rem;margin:1.6rem 0 .5rem}
h3{font-size:1rem;margin:1.2rem 0 .4rem}
p,li,dd{overflow-wrap:anywhere}
a{color:#0550ae}
.headline{border:2px solid;border-radius:6px;padding:.5rem .75rem;font-weight:600}
.headline.ok{background:#dafbe1;border-color:#1a7f37;color:#0f4d20}
.headline.bad{background:#ffebe9;border-color:#cf222e;color:#82071e}
.headline.warn{background:#fff8c5;border-color:#9a6700;color:#633c01}
.headline.standby{background:#ddf4ff;border-color:#0969da;color:#0a3069}
nav ul{list-style:none;padding:0;margin:.5rem 0;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem}
.problems li{margin:.3rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.4rem 0}
dt{font-weight:600}dd{margin:0}
.scroll{overflow-x:auto;max-width:100%}
.scroll:focus{outline:2px solid #0969da}
table{border-collapse:collapse;margin:.2rem 0}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);
white-space:nowrap}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top;
white-space:nowrap}
th{background:#f6f8fa}
td.text{white-space:normal;min-width:12rem;max-width:30rem;overflow-wrap:anywhere}
.bad{color:#a40e26}.ok{color:#116329}.muted{color:#59636e}
strong.bad,strong.ok{font-weight:700}
footer{margin:2rem 0 1rem;color:#59636e}
"""
STYLE_SOURCE = "'sha256-" + base64.b64encode(
    hashlib.sha256(_STYLE.encode()).digest()).decode() + "'"
"""The page's inline style, for the ``style-src`` of its Content-Security-Policy."""

_STATE_WORDS = {  # the known problem states (statusbook.PROBLEM_STATES); others are named as-is
    "failed": "failed: the controller could not give them their bundle entry",
    "image_unpullable": "cannot pull their image",
    "stuck": "stuck: their change has not gone through",
    "conflict": "in conflict: another controller manages them too",
    "locked": "locked: waiting for a deployment to end",
}
_READY_WORDS = {
    "marathon": "Marathon has not answered for two resync periods.",
    "events": "Neither the event stream nor a relist has worked for two resync periods.",
    "standby": "ZooKeeper does not answer: this replica could not take over.",
}


class _Problems:
    """What needs a person (``bad``) and what is only not ready yet (``notes``), in words."""

    def __init__(self) -> None:
        self.bad: list[str] = []
        self.notes: list[str] = []


_LONG = 24
"""Characters beyond which a cell's text wraps (in a column at least 12rem wide); shorter
ones keep to one line, and a table wider than the screen scrolls in its own region."""


def _cell(value: object, html: str | None = None) -> str:
    """A cell for ``value``, or for ``html`` already made (whose text is ``value``)."""
    if value is None or value == "":
        return '<td class="muted">-</td>'
    text = str(value)
    kind = ' class="text"' if len(text) > _LONG else ""
    return f"<td{kind}>{escape(text) if html is None else html}</td>"


def _table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[object]],
           empty: str, *, first: Sequence[str] = ()) -> str:
    """A table in its own scrolling region (narrow screens scroll it, not the page); its
    caption is for screen readers, as a heading names it on screen.

    ``first`` holds HTML already made for the first cell of each row (a status with words).
    """
    body = "".join(
        "<tr>" + (first[i] if first else "") + "".join(_cell(v) for v in row) + "</tr>"
        for i, row in enumerate(rows))
    if not body:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    return (f'<div class="scroll" role="region" aria-label="{escape(caption)}" tabindex="0">'
            f'<table><caption class="sr">{escape(caption)}</caption><thead>'
            f"<tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _when(iso: str | None) -> str | None:
    """An ISO time, readable: ``2026-12-01 06:00:01 UTC`` (times are UTC)."""
    return f"{iso[:19].replace('T', ' ')} UTC" if iso else None


def _age(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _login(registry: Mapping[str, Any]) -> str:
    """The last login with the registry, in words."""
    login = registry.get("login")
    if login is None:
        return "off" if registry.get("verify", "off") == "off" else "not tried yet"
    return f"{login['result']} ({_when(login.get('at'))}): {login.get('detail')}"


def _registry_problem(r: Mapping[str, Any], dry_run: bool) -> str | None:
    """What is wrong with a registry's bundle, in words; ``None`` when nothing is."""
    if r.get("credentials_rejected"):
        return ("credentials rejected: the registry refuses the source's credential; "
                "the last good bundle stays")
    if r.get("damage"):
        return f"bundle damaged: {r['damage']}"
    if r.get("failures"):
        return f"refresh failing ({r['failures']}x): {r.get('last_error')}"
    if not r.get("fingerprint") and not dry_run:
        return "no bundle published yet"
    return None


def _status_cell(problem: str | None, ok: str) -> str:
    if problem is None:
        return _cell(f"OK: {ok}", f'<strong class="ok">OK</strong>: {escape(ok)}')
    return _cell(f"Problem: {problem}",
                 f'<strong class="bad">Problem</strong>: {escape(problem)}')


def _registries(registries: Mapping[str, Mapping[str, Any]], dry_run: bool) -> str:
    rows, first = [], []
    for name, r in registries.items():
        problem = _registry_problem(r, dry_run)
        first.append(_cell(name)
                     + _status_cell(problem, "bundle served" if r.get("fingerprint")
                                    else "dry run: nothing is published"))
        rows.append((r.get("fingerprint"), _when(r.get("created_at")),
                     _age(r.get("age_seconds")), _when(r.get("expires_at")) or "never expires",
                     _when(r.get("refresh_at")), _login(r)))
    return _table("Registries and their bundles",
                  ("registry", "status", "bundle fingerprint", "published", "age", "expires",
                   "next refresh", "last login"), rows, "No registry is configured.",
                  first=first)


def _app_rows(apps: Iterable[tuple[str, Mapping[str, Any]]]
              ) -> tuple[list[tuple[object, ...]], list[str]]:
    rows: list[tuple[object, ...]] = []
    first: list[str] = []
    for app_id, a in apps:
        state = str(a.get("state"))
        shown = f"{state} since {_when(a['since'])}" if a.get("since") else state
        label = (_cell(f"Problem: {shown}", f'<strong class="bad">Problem</strong>: '
                       f"{escape(shown)}") if is_problem(state) else _cell(shown))
        first.append(_cell(app_id) + label)
        rows.append((a.get("registry"), a.get("detail"), a.get("last_error"),
                     _pull_failure(a.get("last_pull_failure")),
                     _delay_reset(a.get("last_delay_reset"))))
    return rows, first


_APP_HEADERS = ("app", "state", "registry", "why", "last error", "last pull failure",
                "launch delay reset")


def _apps(status: Mapping[str, Any]) -> str:
    counts: Mapping[str, int] = status.get("counts") or {}
    summary = ", ".join(f"{counts[s]:,} {s}" for s in sorted(counts, key=state_rank)
                        if counts[s])
    parts = [f"<p>{escape(summary) if summary else 'No app is known yet.'}</p>"]
    problems = status.get("problems") or {}
    listed = problems.get("apps") or []
    if listed:
        total = int(problems.get("total") or len(listed))
        rows, first = _app_rows((a["app_id"], a) for a in listed)
        shown = (f"all {total:,}" if total <= len(listed)
                 else f"the first {len(listed):,} of {total:,}, worst first")
        parts.append(f'<h3 id="troubled">Apps that need attention ({shown})</h3>'
                     + _table("Apps that need attention", _APP_HEADERS, rows, "", first=first))
    page = status.get("page") or {}
    apps: Mapping[str, Mapping[str, Any]] = status.get("apps") or {}
    rows, first = _app_rows(apps.items())
    parts.append('<h3 id="all-apps">All apps, by id</h3>' + _pager(page, len(apps))
                 + _table("All apps, by id", _APP_HEADERS, rows, "No app on this page.",
                          first=first))
    return "".join(parts)


def _pager(page: Mapping[str, Any], shown: int) -> str:
    """Which apps this page holds, and links to the first and the next page."""
    total = int(page.get("total") or 0)
    limit = int(page.get("limit") or DEFAULT_PAGE)
    after, following = page.get("after"), page.get("next")
    where = f" after {after}" if after else ""
    links = []
    if after:
        links.append(f'<li><a href="?{escape(urlencode({"limit": limit}))}">First page</a></li>')
    if following:
        query = urlencode({"after": following, "limit": limit})
        links.append(f'<li><a href="?{escape(query)}" rel="next">Next page</a></li>')
    nav = (f'<nav aria-label="Pages of apps"><ul>{"".join(links)}</ul></nav>' if links else "")
    return (f"<p>{_plural(shown, 'app')}{escape(where)}, of {total:,}, "
            f"at most {limit:,} a page.</p>" + nav)


def _pull_failure(failure: Mapping[str, Any] | None) -> str | None:
    """``auth at 2026-12-01 06:00:01 UTC, task web.1: unauthorized: …``."""
    if not failure:
        return None
    task = f", task {failure['task_id']}" if failure.get("task_id") else ""
    return f"{failure['reason']} at {_when(failure['at'])}{task}: {failure.get('message') or '-'}"


def _delay_reset(reset: Mapping[str, Any] | None) -> str | None:
    return f"{reset['result']} at {_when(reset['at'])}" if reset else None


def _role(status: Mapping[str, Any]) -> str:
    """``leader``, ``standby`` or ``inactive``; a document that names none is a leader's."""
    return str(status.get("role") or ("leader" if status.get("leader", True) else "standby"))


def _find_problems(status: Mapping[str, Any], role: str) -> _Problems:
    found = _Problems()
    if role == "inactive":  # starting or stopping: the headline says so, nothing else holds
        return found
    ready: Mapping[str, bool] = status.get("ready") or {}
    for check, ok in ready.items():
        if ok:
            continue
        if check == "synced":
            found.notes.append("The first full sync with Marathon is not done yet.")
        else:
            found.bad.append(_READY_WORDS.get(check, f"Not ready: {check}."))
    if role != "leader":
        return found
    if not (status.get("event_stream") or {}).get("connected"):
        found.bad.append("The Marathon event stream is disconnected: changes are seen only "
                         "at the next relist.")
    dry_run = bool(status.get("dry_run"))
    for name, r in (status.get("registries") or {}).items():
        problem = _registry_problem(r, dry_run)
        if problem is not None:
            found.bad.append(f"Registry {name}: {problem}.")
    counts: Mapping[str, int] = status.get("counts") or {}
    for state in sorted(counts, key=state_rank):
        if counts[state] and is_problem(state):
            words = _STATE_WORDS.get(state, f"in state {state}")
            found.bad.append(f"{_plural(counts[state], 'app')} {words}.")
    return found


def _headline(status: Mapping[str, Any], role: str, found: _Problems) -> tuple[str, str]:
    """The headline's class and words."""
    if role == "standby":
        leader = status.get("leader_identity")
        where = (f"The leader is {leader}." if leader else
                 "The leader's own page shows the bundles and apps.")
        words = f"Standby: this replica waits to take over; the leader does the work. {where}"
        return ("bad", f"Needs attention. {words}") if found.bad else ("standby", words)
    if role != "leader":
        return "warn", "Not working now: this replica is starting or stopping."
    if found.bad:
        return "bad", f"Needs attention: {_plural(len(found.bad), 'problem')}."
    if found.notes:
        return "warn", "Starting: " + " ".join(found.notes)
    return "ok", "All good: nothing needs attention."


def _this_replica(status: Mapping[str, Any], role: str) -> str:
    ready: Mapping[str, bool] = status.get("ready") or {}
    failing = [k for k, v in ready.items() if not v]
    stream = bool((status.get("event_stream") or {}).get("connected"))
    queue = status.get("queue") or {}
    facts = [
        ("Role", role),
        ("Ready", "yes" if ready and not failing else "no (" + ", ".join(failing) + ")"),
        ("Event stream", "connected" if stream else
         ("disconnected" if role == "leader" else "not watched (the leader watches Marathon)")),
        ("Queue", f"{queue.get('depth', 0)} waiting, {queue.get('processing', 0)} in work"
         if queue else "-"),
        ("Mode", "dry run: writes nothing" if status.get("dry_run") else "writes"),
    ]
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts
                            ) + "</dl>"


def render_page(status: Mapping[str, Any]) -> str:
    """The whole page for one ``/status`` document."""
    role = _role(status)
    found = _find_problems(status, role)
    tone, headline = _headline(status, role, found)
    items = [f'<li><strong class="bad">Problem</strong>: {escape(p)}</li>' for p in found.bad]
    items += [f"<li>Not ready yet: {escape(n)}</li>" for n in found.notes]
    problems = (f'<ul class="problems">{"".join(items)}</ul>' if items
                else "<p>Nothing needs attention.</p>")
    recent = [(_when(e["at"]), e["kind"], e["subject"], e["detail"])
              for e in status.get("recent", [])]
    if role == "leader":
        registries = _registries(status.get("registries") or {}, bool(status.get("dry_run")))
        apps = _apps(status)
    else:
        registries = ("<p>The leader checks and publishes the bundles and keeps the apps' "
                      "states: its page shows them.</p>")
        apps = ""
    title = {"ok": "all good", "bad": "needs attention", "warn": "not ready",
             "standby": "standby"}[tone]
    generated = _when(status.get("generated_at"))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>pullsecret controller: {title}</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<header><h1>marathon-pullsecret-controller</h1>"
        f'<p class="headline {tone}">{escape(headline)}</p>'
        '<nav aria-label="Sections"><ul>'
        '<li><a href="#problems">Problems</a></li><li><a href="#replica">This replica</a></li>'
        '<li><a href="#registries">Registries</a></li>'
        + ('<li><a href="#apps">Apps</a></li>' if apps else "")
        + '<li><a href="#recent">Recent</a></li>'
        '<li><a href="status">JSON (/status)</a></li><li><a href="metrics">Metrics</a></li>'
        "</ul></nav></header><main>"
        f'<section aria-labelledby="problems"><h2 id="problems">Problems</h2>{problems}'
        "</section>"
        '<section aria-labelledby="replica"><h2 id="replica">This replica</h2>'
        f"{_this_replica(status, role)}</section>"
        '<section aria-labelledby="registries"><h2 id="registries">Registries</h2>'
        f"{registries}</section>"
        + (f'<section aria-labelledby="apps"><h2 id="apps">Apps</h2>{apps}</section>'
           if apps else "")
        + '<section aria-labelledby="recent"><h2 id="recent">Recent writes and failures</h2>'
        + _table("Recent writes and failures", ("at", "what", "app or registry", "detail"),
                 recent, "Nothing yet.")
        + "</section></main><footer><p>"
        + (f"Made at {escape(generated)}. " if generated else "")
        + 'This page does not refresh itself: <a href="">reload</a> it to see changes.'
        "</p></footer></body></html>")
