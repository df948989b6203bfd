"""What a URL names: its origin (which credentials are bound to), the Marathon a message
names, and whether a step from one URL to another leaves https."""

from __future__ import annotations

from urllib.parse import urlsplit

from controller.marathon.text import shown

__all__ = ["downgrades", "origin_of", "where_of"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """``scheme://host:port`` with the port spelt out, or "" when ``url`` is no http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return shown(f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}")


def where_of(url: str) -> str:
    """The Marathon a message names: ``origin_of`` and the base path the API path (``/v2…``,
    which the message names already) follows, so that a Marathon behind a proxy at
    ``https://dcos.example/service/marathon`` is told from the proxy itself; no query."""
    origin = origin_of(url)
    return origin and shown(origin + urlsplit(url).path.partition("/v2")[0])


def downgrades(current: str, target: str) -> bool:
    return urlsplit(current).scheme == "https" and urlsplit(target).scheme != "https"
