"""The ``remediation`` section: its default, its one key, and a wrong value named."""

from __future__ import annotations

import pytest

from controller.config import settings_from_mapping
from controller.errors import ConfigError
from tests.unit.test_config import minimal, problems

ENV = {"REG_PW": "x"}


def test_launch_delay_reset_is_on_by_default():
    assert settings_from_mapping(minimal(), ENV).remediation.reset_launch_delay is True


@pytest.mark.parametrize("value", [True, False])
def test_launch_delay_reset_is_read(value: bool):
    settings = settings_from_mapping(minimal(remediation={"reset_launch_delay": value}), ENV)
    assert settings.remediation.reset_launch_delay is value


@pytest.mark.parametrize(("section", "words"), [
    ({"reset_launch_delay": "yes"}, "remediation.reset_launch_delay"),
    ({"reset_delay": True}, "remediation"),
], ids=["not-a-boolean", "unknown-key"])
def test_mistakes_are_named(section: dict[str, object], words: str):
    with pytest.raises(ConfigError):
        settings_from_mapping(minimal(remediation=section), ENV)
    assert any(words in p for p in problems(minimal(remediation=section)))
