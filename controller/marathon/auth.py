"""The ``Authorization`` header from ``marathon.auth``: a token or basic auth, read from a
secret file or an environment variable each time it is sent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from controller.errors import MarathonUnavailable
from controller.files import SECRET_FILE_LIMIT, read_limited
from controller.model import Secret
from controller.settings import MarathonSettings

__all__ = ["auth_header"]

_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what aiohttp refuses to send


def auth_header(settings: MarathonSettings, env: Mapping[str, str]) -> Secret | None:
    """The ``Authorization`` value, read fresh so a rotated password file takes effect.

    A secret that cannot be read or sent is ``MarathonUnavailable``, not a raw ``OSError`` that
    would kill the event watcher: the file may come back.
    """
    auth = settings.auth
    if auth is None:
        return None
    if auth.token_file or auth.token_env:
        source = (f"marathon.auth.token_file {auth.token_file}" if auth.token_file
                  else f"marathon.auth.token_env {auth.token_env}")
        token = (_read_secret(source, auth.token_file) if auth.token_file
                 else env.get(auth.token_env or "", ""))
        if _HEADER_UNSAFE.search(token):
            raise MarathonUnavailable(f"{source}: the token has control characters, which an "
                                      "HTTP header cannot carry")
        return Secret(f"token={token}")
    password = (_read_secret(f"marathon.auth.password_file {auth.password_file}",
                             auth.password_file) if auth.password_file
                else env.get(auth.password_env or "", ""))
    try:
        return Secret(aiohttp.encode_basic_auth(auth.username or "", password))
    except ValueError:  # a UnicodeEncodeError would quote the password, so nothing is chained
        pass
    raise MarathonUnavailable("marathon.auth: basic auth needs a username without ':' and a "
                              "password that is text")


def _read_secret(source: str, path: Path) -> str:
    """The file's text, stripped; a failure names the file but never chains an error quoting it."""
    try:
        return read_limited(path, SECRET_FILE_LIMIT).decode().strip()
    except OSError as e:
        problem = e.strerror or type(e).__name__
    except ValueError:  # a UnicodeDecodeError carries the secret's bytes
        problem = "not UTF-8 text"
    raise MarathonUnavailable(f"cannot read {source}: {problem}")
