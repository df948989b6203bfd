"""The dry run's recording adapters (``controller.dryrun``): reads pass through, every write and
every registry contact is recorded and raised, never made; and each part of the engine meets
the recorded request by saying what it would have done, with no dry-run flag of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.dialect import Dialect
from controller.dryrun import Recorder, RecordingMarathon, RecordingRegistry, RecordingStore
from controller.errors import (
    ContactRecorded,
    ControllerError,
    CredentialError,
    MarathonError,
    RequestRecorded,
    StorageError,
    TerminalError,
    TransientError,
    WriteRecorded,
)
from controller.imagecheck import ImageChecks
from controller.logingate import LoginGate
from controller.metrics import Metrics
from controller.model import AppId, BundleManifest, RawApp, RegistryCredential, Secret
from controller.plan import bundle_name
from controller.presence import Presence, record_name
from controller.registryapi.results import IMAGE_CHECK_RESULTS
from controller.storage.memory import MemoryStore
from tests.unit.test_publish_verification import REG, Harness, ScriptedVerifier, manager_for
from tests.unit.test_remediation import APP, World

SECRET = "Sup3r-s3cret-Pw"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
CREDENTIAL = RegistryCredential(username="robot", password=Secret(SECRET))


class FakeMarathon:
    """The client's reads from memory; remembers every call it got."""

    def __init__(self, dialect: Dialect) -> None:
        self.calls: list[str] = []
        self.last_answered: float | None = 12.5
        self._dialect = dialect

    async def list_apps(self, label_selector: str | None = None) -> list[RawApp]:
        self.calls.append(f"list_apps {label_selector}")
        return [{"id": "/team/web"}]

    async def get_app(self, app_id: AppId) -> RawApp:
        self.calls.append(f"get_app {app_id}")
        return {"id": app_id, "version": "v1"}

    async def list_deployments(self) -> list[Any]:
        self.calls.append("list_deployments")
        return [{"id": "d1"}]

    async def dialect(self) -> Dialect:
        return self._dialect

    @asynccontextmanager
    async def event_stream(self, event_types: Sequence[str]) -> AsyncIterator[AsyncIterator[bytes]]:
        self.calls.append(f"event_stream {','.join(event_types)}")

        async def chunks() -> AsyncIterator[bytes]:
            yield b"event: x\n\n"

        yield chunks()

    async def update_app(self, app_id: AppId, body: Any, *, force: bool = False) -> str | None:
        self.calls.append(f"update_app {app_id}")
        return "deployment"

    async def reset_launch_delay(self, app_id: AppId) -> bool:
        self.calls.append(f"reset_launch_delay {app_id}")
        return True


def test_a_recorded_request_is_no_error_a_handler_takes_for_its_own():
    """Neither transient nor terminal, no Marathon, storage or credential error: no existing
    handler retries it, swallows it or counts it as a failure by accident."""
    for recorded in (WriteRecorded, ContactRecorded):
        assert issubclass(recorded, RequestRecorded)
        assert issubclass(recorded, ControllerError)
        for other in (TransientError, TerminalError, MarathonError, StorageError,
                      CredentialError):
            assert not issubclass(recorded, other)


class TestRecordingMarathon:
    @pytest.mark.parametrize("method", ["PATCH", "PUT"])
    async def test_reads_pass_through_and_writes_are_recorded(self, method):
        inner, recorder = FakeMarathon(Dialect(write_method=method)), Recorder()
        marathon = RecordingMarathon(inner, recorder)
        assert await marathon.list_apps("pullsecret.enabled") == [{"id": "/team/web"}]
        assert (await marathon.get_app(APP))["version"] == "v1"
        assert await marathon.list_deployments() == [{"id": "d1"}]
        assert (await marathon.dialect()).write_method == method
        assert marathon.last_answered == 12.5
        async with marathon.event_stream(["deployment_success"]) as chunks:
            assert [c async for c in chunks] == [b"event: x\n\n"]

        body = {"fetch": [{"uri": f"https://user:{SECRET}@files.example.com/x"}]}
        with pytest.raises(WriteRecorded) as update:
            await marathon.update_app(APP, body, force=True)  # type: ignore[arg-type]
        with pytest.raises(WriteRecorded) as reset:
            await marathon.reset_launch_delay(APP)
        assert str(update.value) == (
            f"dry run: {method} /v2/apps/team/web?force=true: recorded, not made")
        assert str(reset.value) == "dry run: DELETE /v2/queue/team/web/delay: recorded, not made"
        assert SECRET not in str(update.value)
        assert inner.calls == ["list_apps pullsecret.enabled", "get_app /team/web",
                               "list_deployments", "event_stream deployment_success"]
        assert recorder.counts == {"update_app": 1, "reset_launch_delay": 1}
        assert list(recorder.recent) == [f"{method} /v2/apps/team/web?force=true",
                                         "DELETE /v2/queue/team/web/delay"]


def manifest(name: str) -> BundleManifest:
    return BundleManifest(registry=name, sha256="0" * 64, format="config.json", created_at=T0,
                          refresh_at=T0 + timedelta(hours=1))


class TestRecordingStore:
    async def test_reads_pass_through_and_writes_are_recorded(self):
        inner, recorder = MemoryStore(), Recorder()
        name = bundle_name(REG)
        await inner.put_bundle(name, b"bundle", manifest(REG))
        await inner.write_note("note", b"{}")
        store = RecordingStore(inner, recorder)
        assert store.home == inner.home
        assert store.fixed_location(name) == inner.fixed_location(name)
        assert await store.location(name) == await inner.location(name)
        assert await store.get_manifest(name) == manifest(REG)
        assert await store.read_bundle(name, 100) == b"bundle"
        assert await store.read_note("note", 100) == b"{}"
        assert await store.list_names() == await inner.list_names()

        writes = [store.put_bundle("other", SECRET.encode(), manifest("other")),
                  store.delete(name), store.write_note("note", b"[]"), store.cleanup()]
        for write in writes:
            with pytest.raises(WriteRecorded) as recorded:
                await write
            assert SECRET not in str(recorded.value)
        assert (inner.writes, await inner.list_names()) == (1, [name])
        assert await inner.read_note("note", 100) == b"{}"
        assert recorder.counts == {"put_bundle": 1, "delete": 1, "write_note": 1, "cleanup": 1}
        assert list(recorder.recent) == [
            "publish other", f"delete {name}", "write note",
            "remove what interrupted writes left"]


class TestRecordingRegistry:
    async def test_a_login_and_an_image_check_are_recorded_not_sent(self):
        recorder = Recorder()
        registry = RecordingRegistry(REG, recorder)
        with pytest.raises(ContactRecorded) as login:
            await registry.verify(CREDENTIAL)
        with pytest.raises(ContactRecorded) as check:
            await registry.check_image(CREDENTIAL, "team/web", "1.0")
        assert str(login.value) == f"dry run: log in at {REG}: recorded, not made"
        assert "team/web (1.0)" in str(check.value)
        assert SECRET not in str(login.value) + str(check.value)
        assert recorder.counts == {"login": 1, "check_image": 1}


def test_the_recorder_keeps_the_last_requests_and_counts_them_all():
    """A dry-run daemon records on every resync: the words kept are bounded."""
    recorder = Recorder(keep=2)
    for n in range(3):
        recorder.write("update_app", f"PATCH /v2/apps/a{n}")
    assert list(recorder.recent) == ["PATCH /v2/apps/a1", "PATCH /v2/apps/a2"]
    assert recorder.counts == {"update_app": 3}


# -- how the engine meets a recorded request ------------------------------------------------


class TestBundles:
    def dry(self, h: Harness, recorder: Recorder, mode: str = "best_effort") -> Any:
        """The manager of ``h``'s registry as the wiring builds it for a dry run."""
        return manager_for(REG, mode, h.password_file,  # type: ignore[arg-type]
                           RecordingRegistry(REG, recorder), RecordingStore(h.store, recorder),
                           h.logins)

    async def test_a_recorded_publish_still_gives_apps_the_location(self, tmp_path):
        """No bundle is stored, but its publish was recorded: apps are planned with its
        location, as the pass that publishes it would write them."""
        h, recorder = Harness(tmp_path, ScriptedVerifier()), Recorder()
        dry = self.dry(h, recorder, "off")
        location = await dry.location(REG)
        assert location == await h.store.location(bundle_name(REG))
        assert recorder.counts == {"put_bundle": 1}
        assert dry.previews[REG] == "would publish a new bundle: none is stored yet"
        assert h.store.manifests == {}

    async def test_no_location_when_nothing_could_be_recorded(self, tmp_path):
        """A credential that cannot be read gives no bundle, in a dry run as in a run."""
        h, recorder = Harness(tmp_path, ScriptedVerifier()), Recorder()
        h.password_file.write_text("")
        with pytest.raises(CredentialError, match="no bundle for"):
            await self.dry(h, recorder).location(REG)
        assert recorder.counts == {}

    async def test_an_unchanged_bundle_whose_check_was_asked_for_stays_unchanged(self, tmp_path):
        """A failed pull asks for a login with the stored credential: in a dry run the login is
        recorded and the bundle is unchanged, as ``plan`` has always said."""
        h = Harness(tmp_path, ScriptedVerifier("accepted"))
        assert await h.manager.refresh(REG) == "published"
        recorder = Recorder()
        dry = self.dry(h, recorder)
        assert await dry.refresh(REG, verify_current=True) == "unchanged"
        assert await dry.refresh(REG) == "unchanged"
        assert recorder.counts == {"login": 1}
        assert dry.previews[REG] == "unchanged: the stored bundle holds the source's credential"
        assert h.store.writes == 1


class TestImageChecks:
    async def test_a_recorded_check_is_not_checked_and_not_asked_again(self):
        """The app is planned as not checked (what ``plan`` shows), the registry is not asked
        again, and nothing is counted."""
        recorder, metrics = Recorder(), Metrics(CollectorRegistry())
        checks = ImageChecks({REG: RecordingRegistry(REG, recorder)},
                             lambda registry: (CREDENTIAL, "digest"),
                             LoginGate(interval=lambda r: 300.0), metrics)
        image = f"{REG}/team/web:1"
        assert checks.needs_asking(REG, image)
        assert await checks.check(REG, image) is None
        assert await checks.check(REG, f"{REG}/team/other:2") is None
        assert not checks.needs_asking(REG, image)
        assert checks.known(REG, image) is None
        assert recorder.counts == {"check_image": 1}
        assert not any(metrics.collectors.get_sample_value(
            "marathon_pullsecret_image_checks_total", {"registry": REG, "result": result})
            for result in IMAGE_CHECK_RESULTS)


class TestRemediation:
    async def test_a_recorded_reset_counts_as_done_for_its_fix_and_is_not_counted(self):
        """The launch delay reset is recorded once per fix, never raised to the app's
        reconcile, and neither counted nor shown as a reset."""
        world = World(Recorder().write("reset_launch_delay", "DELETE /v2/queue/team/web/delay"))
        world.fail()
        world.remediator.bundle_published(REG)
        await world.converge()
        await world.converge()
        assert world.queue.resets == [APP]
        for result in ("ok", "not_queued", "error"):
            assert world.sample("delay_resets_total", result=result) == 0
        assert world.snapshot()["last_delay_reset"] is None


class TestPresence:
    async def test_a_dry_run_leaves_no_record(self):
        """Claimed, kept and released on a recording store: nothing is written, nothing
        raised, and the name stays free for a controller that writes."""
        store, recorder = MemoryStore(), Recorder()
        presence = Presence(RecordingStore(store, recorder), "default", "aaa")
        await presence.claim()
        await presence.release()
        assert record_name("default") not in store.notes
        assert recorder.counts == {"write_note": 1}
