"""What a new operator (or an attacker) meets from a fresh clone: a storage directory that is
not there, a config checked off its host, apps whose owners broke them, an interrupted pass,
and the options every command takes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.plan import bundle_name, is_managed_uri
from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import REGISTRY, config_doc, docker_app, write_config
from tests.integration.runner import cli
from tests.integration.test_cli import SECRET
from tests.services import HOST, free_port

ROOT = Path(__file__).resolve().parents[2]
ENV = {"REG_PW": SECRET}
NOT_THERE = "does not exist: is the shared filesystem mounted on this host?"


def count_requests(state: MarathonState) -> object:
    """A planned fault every request to the simulator would use up one of (a 503); its
    ``remaining`` says how many arrived."""
    return state.fail_next("", count=1_000_000)


class TestStorageIsNeverCreated:
    @pytest.mark.parametrize("argv", [["check-config"], ["plan"], ["reconcile", "--once"],
                                      ["uninstall"], ["run"]],
                             ids=["check-config", "plan", "reconcile", "uninstall", "run"])
    async def test_a_mistyped_path_stops_before_marathon(self, tmp_path, argv):
        """A storage path that does not exist: exit 2 naming it, nothing created, and not one
        request to Marathon (so no app is rewritten to a URI no agent can fetch)."""
        mistyped = tmp_path / "mnt" / "shraed" / "pullsecrets"
        state = MarathonState(deployment_seconds=0)
        state.load_apps([docker_app("/shop/web")])
        spy = count_requests(state)
        async with MarathonSimulator(state) as sim:
            doc = config_doc(sim.url, str(mistyped), server={"listen": f"{HOST}:{free_port()}"})
            code, out, err = await cli(*argv, "-c", write_config(tmp_path, doc), env=ENV)
        assert code == 2, out + err
        assert f"error: storage.filesystem.path: {mistyped} {NOT_THERE}" in err
        assert "Traceback" not in err
        assert not (tmp_path / "mnt").exists()
        assert spy.remaining == 1_000_000, "a request reached Marathon"
        assert state.writes == []

    async def test_a_file_in_its_place(self, tmp_path):
        (tmp_path / "bundles").write_text("")
        doc = config_doc("http://127.0.0.1:1", str(tmp_path / "bundles"))
        code, _, err = await cli("check-config", "-c", write_config(tmp_path, doc), env=ENV)
        assert (code, err) == (2, f"error: storage.filesystem.path: {tmp_path / 'bundles'} is "
                                  "not a directory\n")

    async def test_require_mount_refuses_a_directory_on_the_root_filesystem(self, tmp_path):
        """The empty mount point left on the local disk when the shared filesystem is not
        mounted: it exists, but ``require_mount`` says it is not the shared one."""
        if os.stat(tmp_path).st_dev != os.stat("/").st_dev:
            pytest.skip("tmp_path is not on the root filesystem here")
        doc = config_doc("http://127.0.0.1:1", tmp_path / "bundles")
        doc["storage"]["filesystem"]["require_mount"] = True
        code, _, err = await cli("reconcile", "--once", "-c", write_config(tmp_path, doc),
                                 env=ENV)
        assert code == 2
        assert (f"storage.filesystem.path: {tmp_path / 'bundles'} is on the root filesystem, "
                "not on a mounted one (require_mount is set)") in err

    async def test_bundle_does_not_need_the_storage_directory(self, tmp_path):
        """``bundle`` writes its own file: a host without the shared filesystem can run it."""
        doc = config_doc("http://127.0.0.1:1", str(tmp_path / "not-mounted"))
        output = tmp_path / "docker.tar.gz"
        code, _, err = await cli("bundle", "-c", write_config(tmp_path, doc), "--registry",
                                   REGISTRY, "-o", output, env=ENV)
        assert code == 0, err
        assert output.stat().st_size > 0
        assert not (tmp_path / "not-mounted").exists()


class TestOffline:
    @pytest.mark.parametrize("path", ["deploy/marathon/config.yaml",
                                      "config/controller.example.yaml"])
    async def test_the_repository_examples_check_offline(self, path):
        """Off the target host their files, variables and storage are not there: only
        ``--offline`` passes, and its OK line says what was not checked."""
        code, out, err = await cli("check-config", "--offline", "-c", ROOT / path)
        assert (code, err) == (0, "")
        assert out == (f"{ROOT / path}: OK (1 registry; offline: syntax and values only, not "
                       "the files, variables, group or storage directory it names)\n")
        code, _, err = await cli("check-config", "-c", ROOT / path)
        assert code == 2
        assert f"storage.filesystem.path: /mnt/shared/pullsecrets {NOT_THERE}" in err

    async def test_values_are_still_checked(self, tmp_path):
        doc = config_doc("http://127.0.0.1:1", "/nowhere", hosts=["registry.example:99999"],
                         reconcile={"resync_seconds": "500ms"})
        code, _, err = await cli("check-config", "--offline", "-c", write_config(tmp_path, doc))
        assert code == 2
        assert "registries[0].host: port '99999' is not a number from 1 to 65535" in err
        assert "reconcile.resync_seconds: must be at least 1s" in err
        assert "/nowhere" not in err
        assert "REG_PW" not in err


class TestWhoseFailure:
    """A broken app is its owner's to fix: it is reported, and fails no command."""

    def apps(self, bundles: Path) -> list[dict[str, object]]:
        ours = {"uri": f"file://{bundles}/{bundle_name(REGISTRY)}", "extract": True,
                "cache": False}
        return [docker_app("/shop/web"),
                docker_app("/shop/upper", f"{REGISTRY}/Shop/Upper:1", fetch=[ours]),
                docker_app("/shop/digest", f"{REGISTRY}/shop/digest@sha256:abc")]

    async def test_invalid_apps_are_listed_and_counted(self, tmp_path):
        state = MarathonState(deployment_seconds=0)
        state.load_apps(self.apps(tmp_path / "bundles"))
        async with MarathonSimulator(state) as sim:
            config = write_config(tmp_path, config_doc(sim.url, tmp_path / "bundles"))
            for argv in (["plan"], ["reconcile", "--once"]):
                code, out, err = await cli(*argv, "-c", config, env=ENV)
                assert code == 0, out + err
                assert ("/shop/digest: INVALID: container.docker.image: invalid image reference "
                        f"'{REGISTRY}/shop/digest@sha256:abc': invalid reference format (the "
                        "app's definition; left as it is)") in out
                assert ("/shop/upper: INVALID: container.docker.image: invalid image reference "
                        f"'{REGISTRY}/Shop/Upper:1': repository name 'Shop/Upper' must be "
                        "lowercase") in out
                assert out.splitlines()[-1].endswith(", 2 invalid, 0 failed")
            code, out, _ = await cli("reconcile", "--once", "-q", "-c", config, env=ENV)
        assert code == 0
        assert [line.split(":")[0] for line in out.splitlines()] == [
            "/shop/digest", "/shop/upper", "summary"]
        assert [w.path for w in state.writes] == ["/v2/apps/shop/web"]

    async def test_uninstall_removes_entries_from_an_app_with_an_invalid_image(self, tmp_path):
        """Uninstall removes entries by their owner, so the image need not parse."""
        state = MarathonState(deployment_seconds=0)
        state.load_apps(self.apps(tmp_path / "bundles")[:2])
        async with MarathonSimulator(state) as sim:
            config = write_config(tmp_path, config_doc(sim.url, tmp_path / "bundles"))
            code, out, err = await cli("uninstall", "-c", config, env=ENV)
        assert code == 0, out + err
        assert "/shop/upper: remove (no registry is configured)" in out
        assert not any(is_managed_uri(e["uri"]) for e in state.get_app("/shop/upper")["fetch"])

    async def test_marathon_refusing_us_is_ours(self, tmp_path):
        """A 401 is a failure of ours (exit 1), and says which key is missing."""
        state = MarathonState(deployment_seconds=0)
        async with MarathonSimulator(state, credentials=("ops", "pw")) as sim:
            config = write_config(tmp_path, config_doc(sim.url, tmp_path / "bundles"))
            code, _, err = await cli("plan", "-c", config, env=ENV)
        assert code == 1
        assert err.splitlines()[-1] == ("error: GET /v2/apps: 401 Invalid username or password. "
                                        "(Marathon asks for credentials: set marathon.auth)")

    async def test_a_proxied_marathon_is_named_whole(self, tmp_path):
        """A Marathon behind a path-routing proxy is named with its path in errors."""
        url = f"http://127.0.0.1:{free_port()}/service/marathon"
        config = write_config(tmp_path, config_doc(url, tmp_path / "bundles"))
        code, _, err = await cli("plan", "-c", config, env=ENV)
        assert code == 1
        assert f"({url}: connection refused)" in err


class TestInterrupted:
    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    async def test_an_interrupted_pass_says_what_it_wrote(self, tmp_path, sig):
        """One write a minute: the first app is written, then the pass is interrupted while it
        waits. It prints that write, and exits 130."""
        state = MarathonState(deployment_seconds=0)
        state.load_apps([docker_app(f"/shop/app-{i}") for i in range(3)])
        async with MarathonSimulator(state) as sim:
            config = write_config(tmp_path, config_doc(
                sim.url, tmp_path / "bundles",
                reconcile={"max_writes_per_second": 1 / 60, "write_burst": 1}))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controller", "reconcile", "--once", "-c", str(config),
                env={**os.environ, **ENV}, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            try:
                async with asyncio.timeout(30):
                    while not state.writes:
                        await asyncio.sleep(0.05)  # polling the simulator's write log
                proc.send_signal(sig)
                out, err = await asyncio.wait_for(proc.communicate(), 30)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        assert proc.returncode == 130, err.decode()
        written = [w.path.removeprefix("/v2/apps") for w in state.writes]
        lines = out.decode().splitlines()
        assert written
        assert all(f"{app_id}: add" in lines for app_id in written)
        assert lines[-1] == (f"interrupted: {len(written)} apps so far: {len(written)} updated, "
                             "0 failed; a write under way may have landed too: run it again to "
                             "finish")
        assert err.decode().endswith("interrupted\n")


class TestOptionsEveryCommandTakes:
    async def test_log_format(self, tmp_path):
        """--log-format json makes every log line JSON, whatever the config says."""
        state = MarathonState(deployment_seconds=0)
        state.load_apps([docker_app("/shop/web")])
        async with MarathonSimulator(state) as sim:
            doc = config_doc(sim.url, tmp_path / "bundles", logging={"format": "console"})
            code, _, err = await cli("reconcile", "--once", "--log-level", "info",
                                     "--log-format", "json", "-c", write_config(tmp_path, doc),
                                     env=ENV)
        assert code == 0, err
        events = [json.loads(line)["event"] for line in err.splitlines()]
        assert "reconcile_finished" in events

    async def test_demo_takes_the_global_options(self, tmp_path):
        """-c is noted as unused, -q leaves stdout empty, the log options are taken."""
        code, out, err = await cli("demo", "-q", "-c", tmp_path / "c.yaml", "--log-level",
                                   "debug", "--log-format", "json", "--duration", "2",
                                   "--listen", f"{HOST}:{free_port()}")
        assert (code, out) == (0, "")
        assert f"demo: --config {tmp_path / 'c.yaml'} is not used" in err

    async def test_demo_prints_its_story_a_line_at_a_time_into_a_pipe(self):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", "demo", "--listen", f"{HOST}:{free_port()}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(30):
                while b"initial sync done" not in await proc.stdout.readline():
                    pass
            assert proc.returncode is None  # it still runs: the lines were not held back
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 30)

    async def test_simulator_quiet_has_no_banner(self):
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller", "simulator", "-q", "--listen", f"{HOST}:{port}",
            "--log-level", "warning", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(30):
                while True:  # polling until it listens: it says nothing
                    try:
                        _, writer = await asyncio.open_connection(HOST, port)
                    except OSError:
                        await asyncio.sleep(0.05)
                        continue
                    writer.close()
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert (proc.returncode, out, err) == (0, b"", b"")

    def test_settings_schema_help_writes_no_file(self, tmp_path):
        result = subprocess.run(
            [sys.executable, "-m", "controller.settings_schema", "--help"], cwd=tmp_path,
            capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0
        assert "usage: python -m controller.settings_schema" in result.stdout
        assert list(tmp_path.iterdir()) == []
