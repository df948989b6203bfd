"""The ``Authorization`` that answers a registry's login challenge: Basic auth with the
credential, or a bearer token from the token service the Bearer challenge names (``GET realm``
with Basic auth, or for an identity token the OAuth2 ``POST`` with ``grant_type=refresh_token``),
scoped to pull a repository when one is given. Read from distribution/distribution@0d6b721
(v3.1.1+): ``docs/content/spec/auth/token.md`` and ``scope.md`` (the token request and pull
scope); the refresh grant follows distribution's ``oauth.md``. A challenge is read up to
4 KiB.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import urlencode

from yarl import URL

from controller.credentials.base import json_object
from controller.model import RegistryCredential
from controller.registryapi.challenges import Challenge, parse_challenges
from controller.registryapi.results import Stop
from controller.registryapi.trust import HostTrust
from controller.registryapi.wire import Answer, Wire, refusal

_CLIENT_ID = "marathon-pullsecret-controller"
_MAX_CHALLENGE = 4096
_HEADER_TOKEN = re.compile(r"[!-~]+")  # visible ASCII: usable in a header exactly as given


def login_challenge(answer: Answer) -> Challenge:
    """The challenge to answer: Bearer before Basic, as docker prefers tokens."""
    if not answer.challenges:
        raise Stop("error", "the registry answered 401 without a login challenge")
    if sum(map(len, answer.challenges)) > _MAX_CHALLENGE:
        raise Stop("error", "the registry's login challenge is too long")
    if not all(header.isascii() for header in answer.challenges):
        raise Stop("error", "the registry's login challenge is not ASCII text")
    try:
        challenges = [c for header in answer.challenges for c in parse_challenges(header)]
    except ValueError as e:
        problem = str(e)
    else:
        by_scheme = {c.scheme: c for c in reversed(challenges)}
        for scheme in ("bearer", "basic"):
            if scheme in by_scheme:
                return by_scheme[scheme]
        offered = ", ".join(sorted(by_scheme)) or "nothing"
        raise Stop("error", f"the registry asks for a login scheme that is not supported "
                            f"({offered})")
    raise Stop("error", f"the registry's login challenge is malformed: {problem}")


async def authorize(wire: Wire, host_trust: HostTrust, credential: RegistryCredential,
                    challenge: Challenge, origin: URL, path: str | None) -> tuple[str, str]:
    """The ``Authorization`` value to send, and how it was obtained in words."""
    if challenge.scheme == "basic":
        if credential.identity_token:
            raise Stop("error", "an identity token needs a token service, but the "
                                "registry asks for Basic auth")
        return _basic(credential.username, credential.password.reveal()), "basic auth"
    realm, verify_tls = host_trust.token_service(challenge, origin)
    scopes = challenge.params.get("scope", "").split()
    if path is not None:
        scopes.append(f"repository:{path}:pull")
    scopes = list(dict.fromkeys(scopes))
    service = challenge.params.get("service", "")
    if credential.identity_token:
        answer = await _refresh_grant(wire, realm, verify_tls, service, scopes, credential)
    else:
        basic = _basic(credential.username, credential.password.reveal())
        query = [("service", service)] if service else []
        query += [("scope", scope) for scope in scopes]
        query.append(("account", credential.username))
        answer = await wire.request("GET", str(realm.extend_query(query)), read=True,
                                    authorization=basic, verify_tls=verify_tls)
    where = str(realm.origin())
    if answer.status != 200:
        raise refusal(answer.status, f"the token service ({where})",
                      "the token service refused the credential")
    return f"Bearer {_token(answer.body, where)}", f"token from {where}"


async def _refresh_grant(wire: Wire, realm: URL, verify_tls: bool, service: str,
                         scopes: list[str], credential: RegistryCredential) -> Answer:
    """Docker's OAuth2 exchange of an identity token (distribution ``oauth.md``)."""
    token = credential.password.reveal()
    if _utf8(token) is None:
        raise Stop("error", "the credential is not valid UTF-8 text")
    fields = {"grant_type": "refresh_token", "refresh_token": token,
              "service": service, "client_id": _CLIENT_ID}
    if scopes:
        fields["scope"] = " ".join(scopes)
    answer = await wire.request("POST", str(realm), read=True, form=urlencode(fields),
                                verify_tls=verify_tls)
    where = str(realm.origin())
    if answer.status == 400:  # RFC 6749 section 5.2: a bad refresh token is invalid_grant
        if (json_object(answer.body) or {}).get("error") == "invalid_grant":
            raise Stop("rejected", "the token service refused the identity token "
                                   "(invalid_grant)")
        raise Stop("error", f"the token service ({where}) answered 400 to the "
                            "identity token")
    if answer.status in (404, 405):
        raise Stop("error", f"the token service ({where}) takes no OAuth2 POST, which "
                            "an identity token needs")
    return answer


def _token(body: bytes, origin: str) -> str:
    """The bearer token in a token service's answer (``access_token`` wins, as in docker)."""
    data = json_object(body)
    if data is None:
        raise Stop("error", f"the token service ({origin}) answered something that is not "
                            "a JSON object")
    token = data.get("access_token") or data.get("token")
    if not isinstance(token, str) or not _HEADER_TOKEN.fullmatch(token):
        raise Stop("error", f"the token service ({origin}) answered no usable token")
    return token


def _utf8(text: str) -> bytes | None:
    """``text`` as UTF-8, or ``None``: the encoding error would quote the secret."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


def _basic(username: str, password: str) -> str:
    raw = _utf8(f"{username}:{password}")
    if raw is None:
        raise Stop("error", "the credential is not valid UTF-8 text")
    return "Basic " + base64.b64encode(raw).decode()
