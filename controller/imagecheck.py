"""Unpullable images, found before a task fails: may the registry's credential pull this image?

For each opted-in app, the controller asks the app's registry whether the credential it
publishes may pull the app's image (``ImageChecker``: a token with the repository's pull
scope, then a ``HEAD`` of the manifest; no layer is pulled, and Docker Hub does not count a
``HEAD`` as a pull). Answers are kept per credential, repository and reference, so each image is
asked about once per credential: again when the credential changes (a new bundle), or when an
app names another image. Questions are shared while in flight and at most ``concurrency`` run
at once per registry. A registry that did not answer (``unreachable``, ``error``) is asked again
after ``retry_seconds``. A credential the registry refused is never used (``LoginGate``).

``denied``, ``manifest_unknown`` and ``name_unknown`` make the app ``image_unpullable``;
``unreachable`` and ``error`` say nothing of the image and change no state. A registry whose
checker only records the question (``ContactRecorded``: a dry run) is not checked: its apps
are planned as not checked, as ``plan`` has always shown them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

import msgspec

from controller.errors import ContactRecorded
from controller.logingate import LoginGate
from controller.model import RegistryCredential
from controller.reference import InvalidReferenceError, parse_image
from controller.registryapi.results import ImageCheck, ImageChecker, ImageCheckResult

__all__ = ["UNPULLABLE", "CheckObserver", "ImageChecks", "ImageSubject"]

UNPULLABLE: Final[frozenset[ImageCheckResult]] = frozenset(
    {"denied", "manifest_unknown", "name_unknown"})
"""Answers that say the credential cannot pull the image."""


class CheckObserver(Protocol):
    """What is counted of image checks (``Metrics`` is one)."""

    def on_image_check(self, registry: str, result: ImageCheckResult) -> None: ...


class ImageSubject(msgspec.Struct, frozen=True):
    """One image asked about: the repository path on its registry and a tag or digest."""

    repository: str
    reference: str

    @classmethod
    def of(cls, image: str) -> ImageSubject | None:
        """What ``docker pull image`` fetches (``latest`` when untagged); ``None`` for an
        image docker would refuse (the planner reports it)."""
        try:
            parsed = parse_image(image)
        except InvalidReferenceError:
            return None
        return cls(parsed.path, parsed.digest or parsed.tag or "latest")


class _Answer(msgspec.Struct, frozen=True):
    check: ImageCheck
    at: float


class ImageChecks:
    def __init__(
        self,
        checkers: Mapping[str, ImageChecker],
        credential: Callable[[str], tuple[RegistryCredential, str] | None],
        gate: LoginGate,
        observer: CheckObserver,
        *,
        concurrency: int = 4,
        retry_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``checkers`` are the registries whose images are checked; ``credential(registry)``
        gives the credential to check with and its bundle's digest (``None``: none yet)."""
        self._checkers = checkers
        self._credential = credential
        self._gate = gate
        self._observer = observer
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._slots = {registry: asyncio.Semaphore(concurrency) for registry in checkers}
        self._answers: dict[tuple[str, str, ImageSubject], _Answer] = {}
        self._asking: dict[tuple[str, str, ImageSubject],
                           asyncio.Future[ImageCheck | None]] = {}
        self._recorded: set[str] = set()
        """Registries whose checker only recorded a question (a dry run)."""

    def checks(self, registry: str) -> bool:
        return registry in self._checkers

    def known(self, registry: str, image: str) -> ImageCheck | None:
        """The answer kept for the image with the registry's current credential, if any (for
        planning without I/O); ``None`` also when there is nothing to ask."""
        key = self._key(registry, image)
        answer = self._answers.get(key) if key is not None else None
        return answer.check if answer is not None and self._fresh(answer) else None

    def needs_asking(self, registry: str, image: str) -> bool:
        """Whether ``check`` would ask the registry now."""
        key = self._key(registry, image)
        if key is None:
            return False
        answer = self._answers.get(key)
        return answer is None or not self._fresh(answer)

    async def check(self, registry: str, image: str) -> ImageCheck | None:
        """What the registry says of the image with its current credential (kept, or asked
        now); ``None`` when it cannot be asked: not checked, no credential yet, a refused one,
        or an image docker would refuse."""
        key = self._key(registry, image)
        if key is None:
            return None
        answer = self._answers.get(key)
        if answer is not None and self._fresh(answer):
            return answer.check
        found = self._credential(registry)
        if found is None:
            return None
        credential, _ = found
        pending = self._asking.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._asking[key] = pending
            try:
                async with self._slots[registry]:
                    result = await self._checkers[registry].check_image(
                        credential, key[2].repository, key[2].reference)
            except ContactRecorded:
                self._recorded.add(registry)
                pending.set_result(None)
                return None
            except BaseException as e:
                pending.set_exception(e)
                pending.exception()  # retrieved: waiters see it, the loop need not report it
                raise
            finally:
                del self._asking[key]
            self._observer.on_image_check(registry, result.result)
            self._answers[key] = _Answer(result, self._clock())
            pending.set_result(result)
            return result
        return await asyncio.shield(pending)

    def forget(self, registry: str) -> None:
        """Drop what is known of the registry's images (its credential changed)."""
        self._answers = {k: v for k, v in self._answers.items() if k[0] != registry}

    def _key(self, registry: str, image: str) -> tuple[str, str, ImageSubject] | None:
        if registry not in self._checkers or registry in self._recorded:
            return None
        found = self._credential(registry)
        subject = ImageSubject.of(image)
        if found is None or subject is None:
            return None
        _, digest = found
        if self._gate.withheld_until(registry, digest) is not None:
            return None
        return registry, digest, subject

    def _fresh(self, answer: _Answer) -> bool:
        return answer.check.answered or self._clock() - answer.at < self._retry_seconds
