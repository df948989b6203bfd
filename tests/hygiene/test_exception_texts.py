"""Every failure path that holds a secret raises an error whose text, with its whole chain of
causes and contexts, quotes no secret: what a log line or ``/status`` would show.

These are the paths the end-to-end scenario cannot reach by itself (a helper printing the
secret, an ``auth`` value that is not base64, a token with a control character …).
"""

from __future__ import annotations

import base64
import json
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from controller.archive import build_bundle
from controller.config import load_settings
from controller.credentials.dockerconfig import DockerConfigSource
from controller.credentials.helper import HelperSource
from controller.credentials.password import PasswordSource
from controller.errors import ConfigError, ControllerError
from controller.marathon.auth import auth_header
from controller.model import RegistryCredential, Secret
from controller.settings import MarathonAuthSettings, MarathonSettings
from tests.factories import config_doc, write_config
from tests.hygiene.matcher import KnownSecret, find_leaks

SECRET = KnownSecret("Leak~~~???+/: @Me-Not-Zx42", username="robot")
REG = "registry.example.com:5000"


def text_of(error: BaseException) -> str:
    """The message and the formatted traceback, causes and contexts included."""
    return str(error) + "\n" + "".join(traceback.format_exception(error))


def assert_quiet(error: BaseException) -> None:
    assert find_leaks(text_of(error), {"the secret": SECRET}, where="error") == []


async def raised(call: Callable[[], Awaitable[object]]) -> BaseException:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - any type: its text is checked
        await call()
    return caught.value


class TestCredentialSources:
    async def test_password_file_not_utf8(self, tmp_path: Path) -> None:
        """A password file that is not UTF-8 fails without quoting its bytes."""
        path = tmp_path / "pw"
        path.write_bytes(b"\xff" + SECRET.value.encode())
        source = PasswordSource("robot", env_var=None, file=path, env={})
        assert_quiet(await raised(source.fetch))

    @pytest.mark.parametrize("content", [
        json.dumps({"auths": {REG: {"auth": base64.b64encode(
            f"robot:{SECRET.value}".encode()).decode()}}})[:-10],
        json.dumps({"auths": {REG: {"auth": "!" + SECRET.value}}}),
        json.dumps({"auths": {REG: {"auth": base64.b64encode(
            b"\xff" + SECRET.value.encode()).decode()}}}),
    ], ids=["half-written", "auth-not-base64", "auth-not-utf8"])
    async def test_docker_config_broken(self, tmp_path: Path, content: str) -> None:
        """A broken docker config.json fails without quoting the document or the auth."""
        path = tmp_path / "config.json"
        path.write_text(content)
        assert_quiet(await raised(DockerConfigSource(path, registry=REG).fetch))

    @pytest.mark.parametrize("script", [
        f'echo "{SECRET.value}"; exit 1',
        f'echo "not json {SECRET.value}"',
        f'echo \'{{"Username": "", "Secret": "{SECRET.value}"}}\'',
    ], ids=["fails", "not-json", "no-username"])
    async def test_credential_helper_output_is_never_repeated(self, tmp_path: Path,
                                                              script: str) -> None:
        """A helper that prints the secret and fails is named, its output never shown."""
        helper = tmp_path / "docker-credential-leaky"
        helper.write_text(f"#!/bin/sh\ncat >/dev/null\n{script}\n")
        helper.chmod(0o755)
        source = HelperSource("leaky", registry=REG, env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
        assert_quiet(await raised(source.fetch))


class TestMarathonAuth:
    def test_token_with_a_control_character(self) -> None:
        """A token an HTTP header cannot carry is refused without quoting it."""
        settings = MarathonSettings(urls=("http://m",),
                                    auth=MarathonAuthSettings(token_env="TOKEN"))
        with pytest.raises(ControllerError) as caught:
            auth_header(settings, {"TOKEN": SECRET.value + "\n"})
        assert_quiet(caught.value)

    def test_password_file_not_utf8(self, tmp_path: Path) -> None:
        """A Marathon password file that is not UTF-8 is named, never quoted."""
        path = tmp_path / "pw"
        path.write_bytes(b"\xff" + SECRET.value.encode())
        settings = MarathonSettings(urls=("http://m",), auth=MarathonAuthSettings(
            username="ops", password_file=path))
        with pytest.raises(ControllerError) as caught:
            auth_header(settings, {})
        assert_quiet(caught.value)


class TestBundleAndConfig:
    @pytest.mark.parametrize("credential", [
        RegistryCredential(username="ro:bot", password=Secret(SECRET.value)),
        RegistryCredential(username="robot", password=Secret(SECRET.value + "\ud800")),
    ], ids=["colon-in-username", "not-encodable"])
    def test_unusable_credential(self, credential: RegistryCredential) -> None:
        """A credential that cannot go into config.json is refused without quoting it."""
        with pytest.raises(ControllerError) as caught:
            build_bundle(REG, credential, "config.json")
        assert_quiet(caught.value)

    @pytest.mark.parametrize("place", ["password-key", "token-key", "url"])
    def test_secret_written_in_the_config(self, tmp_path: Path, place: str) -> None:
        """A secret put in the config file by mistake is refused, never echoed."""
        credentials: dict[str, str] = {"username": "robot", "password_env": "PW"}
        url = "http://marathon:8080"
        if place == "password-key":
            credentials["password"] = SECRET.value
        elif place == "token-key":
            credentials["token"] = SECRET.value
        else:
            url = f"http://ops:{quote(SECRET.value, safe='')}@marathon:8080"
        path = write_config(tmp_path, config_doc(
            url, tmp_path / "bundles", registries=[{"host": REG, "credentials": credentials}]))
        with pytest.raises(ConfigError) as caught:
            load_settings(path, {"PW": "x"})
        assert_quiet(caught.value)
