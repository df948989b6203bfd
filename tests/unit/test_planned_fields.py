"""``plan.PLANNED_FIELDS`` is every field the planner reads: a rule that reads another one fails
here, before it could silently plan the apps of a list (decoded to those fields alone) apart
from the apps a worker reads whole."""

from __future__ import annotations

from typing import Any

from hypothesis import given

from controller.applist import as_raw
from controller.dialect import Dialect
from controller.errors import InvalidAppError
from controller.plan import PLANNED_FIELDS
from tests.unit.listed import LABEL, LOCATIONS, PLANNER, cases, listed

READABLE = {".".join(path.split(".")[:depth]).replace("<label>", LABEL)
            for path in PLANNED_FIELDS for depth in range(1, path.count(".") + 2)}
"""The planned fields and the objects on their way (``container`` to reach its ``type``)."""


class Reading(dict[str, Any]):
    """An object of an app that notes each key read from it, by its path."""

    def __init__(self, data: dict[str, Any], read: set[str], at: str = "") -> None:
        super().__init__({key: Reading(value, read, f"{at}{key}.")
                          if isinstance(value, dict) and key in ("labels", "container", "docker")
                          else value for key, value in data.items()})
        self._read, self._at = read, at

    def _note(self, key: object) -> None:
        self._read.add(f"{self._at}{key}")

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)

    def keys(self) -> Any:  # reading every key is reading every field
        self._note("*")
        return super().keys()

    def items(self) -> Any:
        self._note("*")
        return super().items()

    def values(self) -> Any:
        self._note("*")
        return super().values()

    def __iter__(self) -> Any:
        self._note("*")
        return super().__iter__()


@given(case=cases)
def test_the_planner_reads_only_the_planned_fields(case):
    """Eligibility and plan (with the list the unknown Marathon version reads) read nothing
    of an app but ``PLANNED_FIELDS`` (the entries of ``fetch`` and ``uris`` whole)."""
    app, where = case
    read: set[str] = set()
    reading = Reading(app, read)
    try:
        decision = PLANNER.eligibility(reading)  # type: ignore[arg-type]
        location = LOCATIONS[where].get(decision.registry) if decision.registry else None
        PLANNER.plan(reading, decision, location, Dialect())  # type: ignore[arg-type]
    except InvalidAppError:
        pass
    assert read <= READABLE, read - READABLE


def test_reading_a_field_outside_the_list_is_caught():
    """The check itself: a read of another field is seen."""
    read: set[str] = set()
    Reading({"id": "/a", "container": {"volumes": []}}, read)["container"].get("volumes")
    assert read - READABLE == {"container.volumes"}


@given(case=cases)
def test_the_planner_decides_alike_on_the_listed_copy(case):
    """Eligibility and plan are the same on the cut copy (what a list keeps of an app) as on
    the full app, or the same ``InvalidAppError``."""
    app, where = case

    def outcome(of: dict[str, Any]) -> Any:
        try:
            decision = PLANNER.eligibility(of)  # type: ignore[arg-type]
            location = LOCATIONS[where].get(decision.registry) if decision.registry else None
            return decision, PLANNER.plan(of, decision, location)  # type: ignore[arg-type]
        except InvalidAppError as e:
            return str(e)

    assert outcome(dict(as_raw(listed(app)))) == outcome(app)
