"""The ``/status`` document: a view of what the term's ``AppIndex`` knows of each app.

Only ids, states, reasons, URIs and error messages are shown: never a credential.

The ``/status`` document (``snapshot``) costs O(page), not O(apps): the counts, the registries,
the apps in trouble (at most ``PROBLEMS_SHOWN``) and the recent writes and failures, then one
page of apps in the order of their ids (``AppPage``), found through an ``AppOrder`` that is
rebuilt from the book at most a few times a second however often pages are asked for.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from controller.appindex import AppIndex, AppStatus, DelayReset, PullFailureNote
from controller.bundles import RegistryState
from controller.fingerprint import fingerprint
from controller.model import AppId

__all__ = ["DEFAULT_PAGE", "FIRST_PAGE", "MAX_PAGE", "PROBLEMS_SHOWN", "PROBLEM_STATES",
           "SETTLED_STATES", "AppOrder", "AppPage", "StatusBook", "is_problem", "state_rank"]

DEFAULT_PAGE = 500
MAX_PAGE = 2000
"""Apps on one page of ``/status`` or the status page, by default and at most."""
_MAX_CURSOR = 1024
"""Longest ``after`` accepted (Marathon app ids are far shorter)."""
PROBLEMS_SHOWN = 100
"""Apps in trouble listed before the pages (all are counted)."""

PROBLEM_STATES: tuple[str, ...] = ("failed", "image_unpullable", "stuck", "conflict", "locked")
"""The states known to need a person, worst first."""
SETTLED_STATES: tuple[str, ...] = ("pending", "converged", "skipped")
"""The states that need nobody. Any state in neither tuple (one added after this was written)
counts as a problem, ranked after the known ones: it is shown, never hidden."""


def is_problem(state: str) -> bool:
    return state not in SETTLED_STATES


def state_rank(state: str) -> tuple[int, int, str]:
    """Known problems worst first, then unknown states by name, then the settled states."""
    if state in PROBLEM_STATES:
        return 0, PROBLEM_STATES.index(state), state
    if state in SETTLED_STATES:
        return 2, SETTLED_STATES.index(state), state
    return 1, 0, state


class AppPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of apps: at most ``limit`` of them, the first whose ids sort after ``after``."""

    limit: int = DEFAULT_PAGE
    after: str | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> AppPage:
        """The page a query asks for (``?limit=&after=``); ``ValueError`` says what is wrong."""
        limit, after = query.get("limit"), query.get("after") or None
        if limit is not None and not (limit.isascii() and limit.isdigit()
                                      and 1 <= int(limit) <= MAX_PAGE):
            raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}")
        if after is not None and not (len(after) <= _MAX_CURSOR and after.startswith("/")
                                      and after.isprintable()):
            raise ValueError(f"after must be an app id (/...), at most {_MAX_CURSOR} characters")
        return cls(limit=DEFAULT_PAGE if limit is None else int(limit), after=after)


FIRST_PAGE = AppPage()


class AppOrder:
    """The book's app ids in order, and the apps in trouble worst first, for paging.

    Rebuilding costs O(apps), so it is done only when a page is asked for, at most every
    ``min_age`` seconds: when the number of apps or of apps in trouble changed, or once the
    order is ``max_age`` old (an app that replaced another, or a change among apps in
    trouble). An app added or removed thus shows within a second; a page is read through
    the book, so what it shows of an app is always current.
    """

    def __init__(self, *, min_age: float = 0.25, max_age: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._min_age = min_age
        self._max_age = max_age
        self._clock = clock
        self._built_at: float | None = None
        self._troubled = 0
        self.ids: list[AppId] = []
        self.problems: list[AppId] = []
        """Apps in trouble when it was built, worst first: at most twice ``PROBLEMS_SHOWN``."""

    def update(self, apps: Mapping[AppId, AppStatus], troubled: int) -> None:
        """Rebuild if due; ``troubled`` is the current number of apps in trouble."""
        now = self._clock()
        if self._built_at is not None:
            age = now - self._built_at
            changed = len(apps) != len(self.ids) or troubled != self._troubled
            if age < self._min_age or not (changed or age >= self._max_age):
                return
        self.ids = sorted(apps)
        self.problems = _worst_first(apps, self.ids) if troubled else []
        self._troubled = troubled
        self._built_at = now

    def page(self, page: AppPage) -> tuple[list[AppId], AppId | None]:
        """The ids on ``page`` and the cursor of the next page (``None`` on the last)."""
        start = 0 if page.after is None else bisect_right(self.ids, page.after)
        ids = self.ids[start:start + page.limit]
        more = start + page.limit < len(self.ids)
        return ids, (ids[-1] if ids and more else None)


def _worst_first(apps: Mapping[AppId, AppStatus], ordered: list[AppId]) -> list[AppId]:
    by_state: dict[str, list[AppId]] = {}
    for app_id in ordered:
        state = apps[app_id].state
        if is_problem(state):
            listed = by_state.setdefault(state, [])
            if len(listed) < 2 * PROBLEMS_SHOWN:
                listed.append(app_id)
    worst = [app_id for state in sorted(by_state, key=state_rank) for app_id in by_state[state]]
    return worst[:2 * PROBLEMS_SHOWN]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class StatusBook:
    """The ``/status`` document and the status page's data: a view of the term's ``AppIndex``
    (which keeps each app's status, its last pull failure and delay reset, and the recent writes
    and failures), with the paging order kept here."""

    def __init__(self, index: AppIndex) -> None:
        self.index = index
        self.order = AppOrder()

    def snapshot(self, registries: Mapping[str, RegistryState], now: datetime,
                 page: AppPage = FIRST_PAGE, *, cut: Callable[[str], str] | None = None,
                 **extra: Any) -> dict[str, Any]:
        """The ``/status`` document with one page of apps; ``cut`` takes local paths out of
        the texts shown (``controller.localpaths``). Costs O(page), not O(apps)."""
        shown = cut or _as_is
        index, apps = self.index, self.index.statuses
        counts = index.counts()
        troubled = sum(n for state, n in counts.items() if is_problem(state))
        self.order.update(apps, troubled)
        ids, following = self.order.page(page)
        problems = [(app_id, status) for app_id in self.order.problems
                    if (status := apps.get(app_id)) is not None and is_problem(status.state)]
        return {
            **extra,
            "generated_at": now.isoformat(),
            "registries": {name: _registry(s, now, shown)
                           for name, s in sorted(registries.items())},
            "counts": dict(counts),
            "problems": {"total": troubled,
                         "apps": [{"app_id": app_id, **self._entry(app_id, status, shown)}
                                  for app_id, status in problems[:PROBLEMS_SHOWN]]},
            "recent": [{**note, "detail": shown(note["detail"])} for note in index.recent],
            "apps": {app_id: self._entry(app_id, status, shown) for app_id in ids
                     if (status := apps.get(app_id)) is not None},
            "page": {"limit": page.limit, "after": page.after, "next": following,
                     "total": len(apps)},
        }

    def _entry(self, app_id: AppId, a: AppStatus, shown: Callable[[str], str]
               ) -> dict[str, Any]:
        return {
            "state": a.state,
            "detail": shown(a.detail),
            "registry": a.registry,
            "last_reconcile": _iso(a.last_reconcile),
            "last_error": _shown(a.last_error, shown),
            "deployment_id": a.deployment_id,
            "since": _iso(a.since),
            "image_check": {"result": a.image_check.result,
                            "detail": shown(a.image_check.detail)} if a.image_check else None,
            "last_pull_failure": _pull_failure(self.index.pull_failure(app_id), shown),
            "last_delay_reset": _delay_reset(self.index.delay_reset(app_id)),
        }


def _as_is(text: str) -> str:
    return text


def _shown(text: str | None, shown: Callable[[str], str]) -> str | None:
    return None if text is None else shown(text)


def _registry(s: RegistryState, now: datetime, shown: Callable[[str], str]) -> dict[str, Any]:
    """A registry's entry. Its bundle is named by a keyed ``fingerprint``, never by a hash of
    its bytes: those are a function of the credential (``controller.fingerprint``)."""
    m = s.manifest
    return {
        "fingerprint": fingerprint(m.sha256) if m else None,
        "format": m.format if m else None,
        "created_at": _iso(m.created_at) if m else None,
        "leader_epoch": m.leader_epoch if m else None,
        "age_seconds": round((now - m.created_at).total_seconds(), 1) if m else None,
        "expires_at": _iso(m.expires_at) if m else None,
        "refresh_at": _iso(m.refresh_at) if m else None,
        "failures": s.failures,
        "last_error": _shown(s.last_error, shown),
        "damage": _shown(s.damage, shown),
        "repairs": s.repairs,
        "verify": s.verify,
        "credentials_rejected": s.credentials_rejected,
        "login": {"result": s.login.result, "at": _iso(s.login.at),
                  "detail": shown(s.login.detail),
                  "next_attempt": _iso(s.next_login) if s.next_login and s.next_login > now
                  else None} if s.login else None,
    }


def _pull_failure(note: PullFailureNote | None, shown: Callable[[str], str]
                  ) -> dict[str, str | None] | None:
    if note is None:
        return None
    return {"reason": note.reason, "at": note.at.isoformat(), "task_id": note.task_id,
            "message": shown(note.message)}


def _delay_reset(reset: DelayReset | None) -> dict[str, str] | None:
    return None if reset is None else {"at": reset.at.isoformat(), "result": reset.result}
