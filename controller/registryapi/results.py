"""What a login and an image check answer: the closed sets of outcomes (fit for metric labels),
the results with their ``detail``, the two ports that give them, and ``Stop``, which carries an
outcome out of the steps as soon as it is known (``login`` says what each outcome means).

A ``detail`` is for operators: at most ``DETAIL_LIMIT`` characters, and never a secret, a token,
a response body or a URL's user info, path or query.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol, get_args

import msgspec

from controller.model import RegistryCredential
from controller.settings import VerifyMode

LoginOutcome = Literal["accepted", "rejected", "unreachable", "error"]
LOGIN_OUTCOMES: tuple[LoginOutcome, ...] = get_args(LoginOutcome)
"""Every outcome, e.g. for the ``result`` label of ``registry_login_total``."""

ImageCheckResult = Literal["ok", "denied", "manifest_unknown", "name_unknown", "unreachable",
                           "error"]
IMAGE_CHECK_RESULTS: tuple[ImageCheckResult, ...] = get_args(ImageCheckResult)
"""Every image check result, in a fixed order (a closed set, fit for a metric label)."""

DETAIL_LIMIT: Final = 400
"""Characters of a ``detail`` at most: a repository path (255) and a digest fit."""


class LoginResult(msgspec.Struct, frozen=True, kw_only=True):
    """How a login went; ``detail`` is for operators and holds no secret."""

    result: LoginOutcome
    detail: str

    def blocks_publishing(self, mode: VerifyMode) -> bool:
        """Whether the credential must not be published under ``mode``: ``required`` publishes
        only what was accepted; ``best_effort`` stops only a refusal, as a registry that is
        down must not stop the cluster; ``off`` never stops one."""
        if mode == "required":
            return self.result != "accepted"
        return mode == "best_effort" and self.result == "rejected"


class ImageCheck(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a credential may pull one image; ``detail`` is for operators, holds no secret."""

    result: ImageCheckResult
    detail: str

    @property
    def answered(self) -> bool:
        """Whether the registry said something about the image (``ok``, ``denied``,
        ``manifest_unknown``, ``name_unknown``), as opposed to not answering usefully: only an
        answer is worth remembering until the credential or the image changes."""
        return self.result not in ("unreachable", "error")


class CredentialVerifier(Protocol):
    """Tries a credential against one registry."""

    async def verify(self, credential: RegistryCredential) -> LoginResult: ...


class ImageChecker(Protocol):
    """Asks one registry whether a credential may pull an image, without pulling it."""

    async def check_image(self, credential: RegistryCredential, repository: str,
                          reference: str) -> ImageCheck: ...


def clip(text: str) -> str:
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT - 1] + "\u2026"


class Stop(Exception):
    """Carries the outcome out of a login or an image check as soon as it is known."""

    def __init__(self, outcome: LoginOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome: LoginOutcome = outcome
        self.detail = clip(detail)
