"""Which certificates a registry is trusted by, and where its credential may go.

**Where a credential goes.** The registry's own origin (the scheme, host and port that answered
``/v2/``) gets it whenever it asks. A token service (the Bearer challenge's ``realm``) gets the
password (Basic auth) or the identity token (refresh grant) only when it is

* that same origin, reached the way the registry is (plain http on loopback and insecure hosts,
  as docker does), or
* https, its certificate verified against the system CAs plus ``ca_file``, or
* on the registry's own host (any port, plain http or unverified https), for a registry marked
  ``insecure`` in the config: the operator has declared that host's network trusted.

Anything else is refused as an ``error`` before the credential leaves: docker sends it to
whatever realm a registry names, but a robot password must not cross the network in clear, nor
go to a peer no certificate vouches for (on loopback, another port may be any local user's). A
realm URL with user info (``https://user:pw@host/token``) is refused too, and never quoted.

Plain http is used only where docker would use it: for loopback hosts and hosts marked insecure,
https (unverified, as docker treats ``insecure-registries``) is tried first and http second.
Every other registry is https only, verified against the system CAs plus an optional CA file.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Literal

import msgspec
from yarl import URL

from controller.errors import ConfigError
from controller.registryapi.challenges import Challenge
from controller.registryapi.results import Stop

_LOOPBACK_NAMES = frozenset({"localhost"})


def ca_trust(ca_file: Path | None) -> ssl.SSLContext | Literal[True]:
    """System CAs, plus ``ca_file`` when given (docker adds ``certs.d`` CAs the same way)."""
    if ca_file is None:
        return True
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except ssl.SSLError:
        problem = "not a PEM certificate file"
    except OSError as e:
        problem = (e.strerror or "cannot be read").lower()
    else:
        return context
    raise ConfigError([f"registry CA file {ca_file}: {problem}"])


class HostTrust(msgspec.Struct, frozen=True, kw_only=True):
    """How far the registry's API host is trusted: ``insecure`` (plain http and unverified https
    allowed) when it is loopback or ``marked_insecure`` in the config."""

    host: str
    marked_insecure: bool

    @property
    def insecure(self) -> bool:
        return self.marked_insecure or _is_loopback(self.host)

    def token_service(self, challenge: Challenge, origin: URL) -> tuple[URL, bool]:
        """The token service, if the credential may be sent there (the module docstring says
        where), and whether its certificate is verified."""
        try:
            realm = URL(challenge.params.get("realm", ""))
        except ValueError:
            realm = URL()
        if realm.scheme not in ("http", "https") or not realm.host:
            raise Stop("error", "the registry's Bearer challenge names no usable token "
                                "service (realm)")
        if "@" in realm.raw_authority:
            raise Stop("error", "the registry's token service (realm) has user info in its "
                                "URL; the credential is not sent there")
        if _same_origin(realm, origin):
            return realm, not self.insecure
        if self.marked_insecure and realm.host == self.host:
            return realm, False
        if realm.scheme == "https":
            return realm, True
        raise Stop("error", f"the token service {realm.origin()} is plain http and not the "
                            f"registry's origin ({origin}); the credential is not sent there")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
