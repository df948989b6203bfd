"""Which Marathon a request goes to: the leader Marathon names (``X-Marathon-Leader`` or a
redirect) when it is one of the configured URLs, else the configured URLs in order; which
redirects may be followed, with the credentials or without."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import structlog
from yarl import URL

from controller.marathon.urls import downgrades, origin_of

__all__ = ["Leaders", "RedirectRefused"]

log = structlog.get_logger(component="marathon")

_MAX_LOGGED_LEADERS = 16


class RedirectRefused(Exception):
    """A redirect that must not be followed; its text says why."""


class Leaders:
    """The configured URLs and the leader among them, as Marathon's answers name it."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = list(urls)
        self._configured: dict[str, str] = {}
        for url in self._urls:
            self._configured.setdefault(origin_of(url), url)
        self._behind_proxy = any(urlsplit(u).path.strip("/") for u in self._urls)
        self._leader: str | None = None
        self._failed_leader: str | None = None
        self._ignored_leaders: set[str] = set()

    def candidates(self) -> list[str]:
        return ([self._leader] if self._leader else []) + [
            u for u in self._urls if u != self._leader]

    def redirect(self, current: str, location: str, *, with_credentials: bool) -> str:
        """Where a redirect leads, if it may be followed (else ``RedirectRefused``).

        Credentials go only where the operator sent them. A redirect within one origin, or to
        another origin in ``marathon.urls``, is followed with them (and a configured target is
        remembered as the leader). A redirect to any other origin (scheme, host or port) is
        followed only when there are no credentials to send; with credentials it is refused,
        not followed without them: that would end in a 401 that reads like a wrong password.
        The next configured URL is tried instead. Never from https to http.
        """
        try:
            target = str(URL(current).join(URL(location)))
        except ValueError:
            raise RedirectRefused("redirected to something that is not a URL") from None
        origin = origin_of(target)
        if not origin:
            raise RedirectRefused("redirected to an address that is not http(s)")
        if downgrades(current, target):
            raise RedirectRefused("refused a redirect from https to http, which would send "
                                  "the credentials in clear")
        if with_credentials and origin != origin_of(current) and origin not in self._configured:
            raise RedirectRefused(f"redirected to {origin}, which is not in marathon.urls, so "
                                  "the credentials were not sent there")
        self.note_leader(target, current)
        return target

    def note_leader(self, leader: str | None, current: str) -> None:
        """Prefer the leader Marathon names (header or redirect) if it is a configured URL.

        Only a URL in ``marathon.urls`` (same scheme, host and port): the credentials go only
        where the operator sent them, and a standby proxies to the leader anyway; any other
        is logged once and ignored. Not behind a path-routing proxy (DC/OS
        ``…/service/marathon``): there the leader's own address bypasses the proxy's
        authentication, may not be reachable at all, and lacks the base path. Never from https
        to http: the credentials would travel in clear. Not the leader that failed last until
        another is named: an address that does not answer would otherwise cost a timeout on
        every other request.
        """
        origin = origin_of(leader or "")
        if self._behind_proxy or not origin:
            return
        configured = self._configured.get(origin)
        if configured is None:
            self._ignore_leader(origin)
        elif configured != self._failed_leader and not downgrades(current, configured):
            self._leader, self._failed_leader = configured, None

    def _ignore_leader(self, origin: str) -> None:
        """Say once per origin (for the first few) that a leader outside the config was named."""
        if origin not in self._ignored_leaders and len(self._ignored_leaders) < _MAX_LOGGED_LEADERS:
            self._ignored_leaders.add(origin)
            log.info("marathon_leader_ignored", origin=origin)

    def forget_leader(self, url: str) -> None:
        """Fall back to the configured URLs once a request to the leader fails."""
        if self._leader is not None and url.startswith(self._leader + "/"):
            self._failed_leader, self._leader = self._leader, None
