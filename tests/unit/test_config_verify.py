"""The login keys of a registry (verify, verify_repository, verify_timeout, ca_file, insecure)
and the verifiers the wiring builds from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from controller.config import settings_from_mapping
from controller.errors import ConfigError
from controller.registryapi.login import RegistryLogin
from controller.wiring import checks_images, registry_logins

HOST = "registry.example.com:5000"


def doc(tmp_path: Path, **registry: Any) -> dict[str, Any]:
    return {
        "marathon": {"urls": ["http://127.0.0.1:8080"]},
        "registries": [{"host": HOST, "credentials": {"username": "robot",
                                                      "password_env": "REG_PW"}, **registry}],
        "storage": {"filesystem": {"path": str(tmp_path)}},
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data, {"REG_PW": "x"})
    return caught.value.problems


class TestKeys:
    def test_defaults_verify_with_best_effort(self, tmp_path):
        """Operators get best_effort, a 10 s login, system CAs and https only by default."""
        registry = settings_from_mapping(doc(tmp_path), {"REG_PW": "x"}).registries[0]
        assert (registry.verify, registry.verify_repository, registry.verify_timeout,
                registry.ca_file, registry.insecure) == ("best_effort", None, 10.0, None, False)

    def test_every_key_is_read(self, tmp_path):
        """Each key reaches the settings, the CA file relative to the config directory."""
        (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        registry = settings_from_mapping(
            doc(tmp_path, verify="required", verify_repository="team-a/app",
                verify_timeout="3s", ca_file="ca.pem", insecure=True),
            {"REG_PW": "x"}, base_dir=tmp_path).registries[0]
        assert (registry.verify, registry.verify_repository, registry.verify_timeout,
                registry.ca_file, registry.insecure) == (
            "required", "team-a/app", 3.0, tmp_path / "ca.pem", True)

    @pytest.mark.parametrize(("change", "words"), [
        ({"verify": "sometimes"}, "registries[0].verify: must be one of"),
        ({"verify_repository": "team-a/app:1"}, "registries[0].verify_repository: 'team-a/app:1':"
                                                " name a repository, without a tag or digest"),
        ({"verify_repository": "Team-A/App"}, "registries[0].verify_repository: invalid image"),
        ({"verify_timeout": "soon"}, "registries[0].verify_timeout: 'soon' is not a duration"),
        ({"ca_file": "/nonexistent/ca.pem"}, "registries[0].ca_file: file /nonexistent/ca.pem "
                                             "does not exist"),
        ({"insecure": "yes"}, "registries[0].insecure: expected true or false"),
    ], ids=["mode", "tag", "uppercase", "timeout", "ca-file", "insecure"])
    def test_mistakes_are_named(self, tmp_path, change, words):
        """A wrong value is reported at its path, in words."""
        found = problems(doc(tmp_path, **change))
        assert any(p.startswith(words) for p in found), found

    def test_login_must_end_within_the_reconcile(self, tmp_path):
        """A login allowed longer than a reconcile would be cut off: refused at load, unless
        verify is off."""
        data = doc(tmp_path, verify_timeout="2m")
        assert problems(data) == ["registries[0].verify_timeout: must be less than "
                                  "reconcile.timeout_seconds (60s), which bounds the whole "
                                  "refresh"]
        data["registries"][0]["verify"] = "off"
        assert settings_from_mapping(data, {"REG_PW": "x"}).registries[0].verify == "off"

    def test_a_short_reconcile_keeps_the_default_login_time(self, tmp_path):
        """The default login time never makes a config with a short reconcile invalid."""
        data = doc(tmp_path) | {"reconcile": {"timeout_seconds": 2}}
        assert settings_from_mapping(data, {"REG_PW": "x"}).registries[0].verify_timeout == 10


class TestVerifiers:
    @pytest.fixture
    async def session(self):
        async with aiohttp.ClientSession() as session:
            yield session

    async def test_off_gets_no_login_unless_its_images_are_checked(self, tmp_path, session):
        """verify: off builds no login, and checks no image unless check_images says so; the
        others log in and check images by default."""
        data = doc(tmp_path, verify="off")
        data["registries"] += [
            {"host": "other.example.com",
             "credentials": {"username": "u", "password_env": "REG_PW"}},
            {"host": "checked.example.com", "verify": "off", "check_images": True,
             "credentials": {"username": "u", "password_env": "REG_PW"}}]
        settings = settings_from_mapping(data, {"REG_PW": "x"})
        logins = registry_logins(settings.registries, session, reconcile_seconds=60)
        assert list(logins) == ["other.example.com", "checked.example.com"]
        assert isinstance(logins["other.example.com"], RegistryLogin)
        assert [checks_images(r) for r in settings.registries] == [False, True, True]

    async def test_insecure_registry_is_warned_about(self, tmp_path, session):
        """An insecure registry is named in a warning at start-up, as docker does."""
        settings = settings_from_mapping(doc(tmp_path, insecure=True), {"REG_PW": "x"})
        with capture_logs() as logs:
            registry_logins(settings.registries, session, reconcile_seconds=60)
        assert [(e["event"], e["log_level"], e["registry"]) for e in logs] == [
            ("registry_insecure", "warning", HOST)]

    async def test_ca_file_without_a_certificate_fails_the_start(self, tmp_path, session):
        """A CA file that holds no PEM certificate is a config error when the login is built."""
        (tmp_path / "ca.pem").write_text("not a certificate\n")
        settings = settings_from_mapping(doc(tmp_path, ca_file="ca.pem"), {"REG_PW": "x"},
                                         base_dir=tmp_path)
        with pytest.raises(ConfigError, match=r"ca\.pem: not a PEM certificate file"):
            registry_logins(settings.registries, session, reconcile_seconds=60)
