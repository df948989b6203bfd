"""The command line as operators run it: exit codes, reports, and no secret in any output."""

from __future__ import annotations

from controller.plan import is_managed_uri
from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import REGISTRY, config_doc, docker_app, write_config
from tests.integration.runner import cli
from tests.services import busy_port

SECRET = "Sup3r-s3cret-Pw"


class TestCheckConfig:
    async def test_many_mistakes_one_report(self, tmp_path):
        """Several mistakes: exit 2, one line per problem with its path, no traceback."""
        config = write_config(tmp_path, {
            "marathon": {"urls": ["marathon:8080"], "timeout_seconds": "soon"},
            "registries": [
                {"host": REGISTRY, "credentials": {"username": "u", "password": SECRET}},
                {"host": "other:5000", "credentials": {"username": "u",
                                                       "password_env": "REG_PW"}},
            ],
            "storage": {"filesystem": {"path": "relative"}},
            "reconcile": {"workers": 0, "colour": "blue"},
        })
        code, out, err = await cli("check-config", "--config", config)
        assert code == 2
        assert "Traceback" not in err
        for expected in ("marathon.timeout_seconds: 'soon' is not a duration",
                         "registries[0].credentials.password: secrets must not be written",
                         "reconcile.colour: unknown key", "reconcile.workers:"):
            assert expected in err
        assert SECRET not in out + err

    async def test_semantic_problems(self, tmp_path):
        """Missing variables and files are named with their paths."""
        config = write_config(tmp_path, config_doc(
            "marathon:8080", "relative", marathon={"ca_file": str(tmp_path / "nope.pem")}))
        code, _, err = await cli("check-config", "--config", config)
        assert code == 2
        assert "registries[0].credentials.password_env: variable REG_PW is not set" in err
        assert "marathon.urls[0]: 'marathon:8080' is not an http(s) URL" in err
        assert f"marathon.ca_file: file {tmp_path / 'nope.pem'} does not exist" in err
        assert "storage.filesystem.path: must be an absolute path" in err

    async def test_missing_file(self, tmp_path):
        """A missing config file is a config error, not a crash."""
        code, _, err = await cli("check-config", "--config", str(tmp_path / "none.yaml"))
        assert (code, "Traceback" in err) == (2, False)

    async def test_good_config(self, tmp_path):
        """A valid config exits 0."""
        config = write_config(tmp_path, config_doc("http://marathon:8080", tmp_path))
        assert (await cli("check-config", "--config", config, env={"REG_PW": "x"}))[0] == 0


class TestPlan:
    async def test_plan_shows_a_diff_and_writes_nothing(self, tmp_path):
        """plan prints each change and a summary, and neither Marathon nor storage is written."""
        state = MarathonState(deployment_seconds=0)
        state.load_apps([docker_app("/a/web"), docker_app("/a/pub", "nginx")])
        async with MarathonSimulator(state) as sim:
            config = write_config(tmp_path, config_doc(sim.url, tmp_path / "bundles"))
            code, out, err = await cli("plan", "-v", "--config", config,
                                       env={"REG_PW": SECRET})
        assert code == 0, err
        assert "/a/web: would add" in out
        assert '+ {"cache": false, "extract": true, "uri": "file://' in out
        assert "pullsecret-registry.example.com_5000.tar.gz" in out
        assert "/a/pub: skipped (image registry docker.io is not configured)" in out
        assert "summary: 2 apps: 1 would update, 1 skipped (1 unconfigured registry)" in out
        assert state.writes == []
        assert list((tmp_path / "bundles").iterdir()) == []
        assert SECRET not in out + err
        assert not any(is_managed_uri(e["uri"]) for e in state.get_app("/a/web")["fetch"])


async def test_busy_listen_port_is_a_clear_error(tmp_path):
    """A port already in use is reported as a config problem (exit 2), not a traceback."""
    with busy_port() as port:
        config = write_config(tmp_path, config_doc(
            "http://127.0.0.1:1", tmp_path, server={"listen": f"127.0.0.1:{port}"}))
        code, _, err = await cli("run", "--config", config, env={"REG_PW": "x"})
    assert code == 2
    assert f"server.listen: cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err
