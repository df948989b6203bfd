"""``inject``: the daemon's planner applied to a pipeline's JSON, offline.

First the pure module (documents, ids, the entry), then a property (an injected app needs no
write, inject is idempotent, nothing but the managed entry changes), then the command as a
pipeline runs it (exit codes, stdin and files, configs it cannot serve).
"""

from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.cli import run
from controller.config import settings_from_mapping
from controller.errors import ConfigError
from controller.inject import Injector, inject, parse_document, render, resolve_id
from controller.manager import planner
from controller.model import BundleLocation
from controller.plan import bundle_name, is_managed_uri
from controller.storage.base import BundleStore
from controller.storage.memory import MemoryStore
from controller.wiring import store_from_settings
from tests.factories import LABEL, REGISTRY, docker_app, write_config

pytestmark = pytest.mark.usefixtures("restore_logging")  # the command configures logging

BUNDLES = "/mnt/shared/pullsecrets"
URI = f"file://{BUNDLES}/{bundle_name(REGISTRY)}"
ENTRY = {"uri": URI, "extract": True, "cache": False}
OLD_URI = f"file:///old/place/{bundle_name(REGISTRY)}"
STRAY_URI = f"file:///elsewhere/{bundle_name(REGISTRY)}"
"""Named like ours, at a location this controller never published to: not ours."""
OTHER_CONTROLLERS = f"file:///mnt/team-b/{bundle_name(REGISTRY, 'team-b')}"
USER_ENTRY = {"uri": "https://files.example.com/static.tgz", "cache": True}
IMAGE = f"{REGISTRY}/shop/app:1"
"""For apps with relative ids (``docker_app`` names the image after an absolute one)."""
OLD_PLACE = "file:///old/place"
"""Listed in ``storage.previous_locations``: entries of ours there are replaced."""


def config(bundles: Path | str, **sections: Any) -> dict[str, Any]:
    """A controller config whose password file does not exist (inject never reads it)."""
    return {
        "marathon": {"urls": ["http://127.0.0.1:1"]},
        "registries": [{"host": REGISTRY, "credentials": {
            "username": "robot", "password_file": "no-such-password-file"}}],
        "storage": {"filesystem": {"path": str(bundles)}, "previous_locations": [OLD_PLACE]},
        **sections,
    }


def injector_for(*allowed: str, **sections: Any) -> Injector:
    """Built as the command builds it: the daemon's planner for ``config(BUNDLES, **sections)``
    (``allowed``: the registry's ``apps`` globs), and the store's fixed locations."""
    doc = config(BUNDLES, **sections)
    if allowed:
        doc["registries"][0]["apps"] = list(allowed)
    settings = settings_from_mapping(doc, {}, offline=True)
    store = store_from_settings(settings.storage)
    return Injector.of(planner(settings, store.home), store.fixed_location)


INJECTOR = injector_for()


def injected(document: Any, injector: Injector = INJECTOR) -> Any:
    """``document`` after inject; the input is never changed in place."""
    before = copy.deepcopy(document)
    result = inject(document, injector)
    assert document == before
    return result.document


def without_ours(node: Any) -> Any:
    """``node`` with every managed entry taken out of every ``fetch`` and ``uris`` list."""
    if isinstance(node, list):
        return [without_ours(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("fetch", "uris") and isinstance(value, list):
            value = [e for e in value
                     if not is_managed_uri(e if isinstance(e, str) else e["uri"])]
        out[key] = without_ours(value)
    return out


def same_json_but_ours(before: Any, after: Any) -> bool:
    """Same keys in the same order and the same values, but for the managed entries."""
    return render(without_ours(before)) == render(without_ours(after))


class TestIds:
    @pytest.mark.parametrize(("path", "base", "resolved"), [
        ("web", "/", "/web"),
        ("web", "/shop", "/shop/web"),
        ("/other/web", "/shop", "/other/web"),
        ("api/v1", "/shop/back", "/shop/back/api/v1"),
        ("./web", "/shop", "/shop/web"),
        ("../tools/cron", "/shop/back", "/shop/tools/cron"),
        ("../../../../up", "/shop", "/up"),
        ("/a/./b/../c", "/shop", "/a/c"),
        ("web//x/", "/shop", "/shop/web/x"),
        ("", "/shop", "/shop"),
    ])
    def test_resolved_as_marathon_does(self, path, base, resolved):
        assert resolve_id(path, base) == resolved


class TestDocuments:
    def test_one_app_gets_the_entry_after_its_own(self):
        app = docker_app("/shop/web", fetch=[USER_ENTRY], instances=2)
        out = injected(app)
        assert out["fetch"] == [USER_ENTRY, ENTRY]
        assert list(out) == list(app)
        assert same_json_but_ours(app, out)

    def test_an_app_without_a_list_gets_fetch_as_its_last_key(self):
        app = docker_app("/shop/web")
        out = injected(app)
        assert list(out) == [*app, "fetch"]
        assert out["fetch"] == [ENTRY]

    def test_a_list_of_apps(self):
        apps = [docker_app("/a", fetch=[]), docker_app("/b", "nginx:1", fetch=[]),
                docker_app("/c", fetch=[ENTRY])]
        out = injected(apps)
        assert [a["fetch"] for a in out] == [[ENTRY], [], [ENTRY]]
        assert same_json_but_ours(apps, out)

    def test_a_group_with_nested_groups_and_relative_ids(self):
        """Ids are resolved against their group's for the allow-list, and printed as written."""
        injector = injector_for("/shop/back/*")
        group = {
            "id": "/shop",
            "apps": [docker_app("web", IMAGE, fetch=[])],
            "groups": [{
                "id": "back",
                "dependencies": ["../front"],
                "apps": [docker_app("api", IMAGE, fetch=[USER_ENTRY]),
                         docker_app("/shop/back/worker", fetch=[])],
                "groups": [{"id": "jobs", "apps": [docker_app("../cron", IMAGE, fetch=[])]}],
            }],
        }
        result = inject(group, injector)
        out = result.document
        back = out["groups"][0]
        assert out["apps"][0]["fetch"] == []  # /shop/web is not allowed
        assert back["apps"][0]["fetch"] == [USER_ENTRY, ENTRY]  # /shop/back/api
        assert back["apps"][1]["fetch"] == [ENTRY]
        assert back["groups"][0]["apps"][0]["fetch"] == [ENTRY]  # /shop/back/cron
        assert [a["id"] for a in back["apps"]] == ["api", "/shop/back/worker"]
        assert back["groups"][0]["apps"][0]["id"] == "../cron"
        assert same_json_but_ours(group, out)
        assert [f.app for f in result.changes] == [
            "api (/shop/back/api)", "/shop/back/worker", "../cron (/shop/back/cron)"]

    def test_a_top_level_group_id_may_be_relative_to_the_root(self):
        group = {"id": "shop", "apps": [docker_app("web", IMAGE, fetch=[])]}
        injector = injector_for("/shop/*")
        assert injected(group, injector)["apps"][0]["fetch"] == [ENTRY]

    @pytest.mark.parametrize(("document", "message"), [
        (3, "expected an app, a list of apps or a group (a JSON object or list), got a number"),
        ([docker_app("/a"), "b"], "[1]: expected an app (a JSON object), got a string"),
        ({"apps": [docker_app("web", IMAGE)]}, "the group: a group needs its id"),
        ({"id": "/g", "groups": [{"apps": []}]}, "groups[0]: a group needs its id"),
        ({"id": "/g", "apps": {"id": "web"}}, "apps: expected a list, got an object"),
        ({"id": "/g", "groups": [{"id": "x", "apps": 1}]},
         "groups[0].apps: expected a list, got a number"),
    ])
    def test_what_is_not_a_document_is_refused(self, document, message):
        with pytest.raises(ConfigError) as raised:
            inject(document, INJECTOR)
        assert message in raised.value.problems[0]


class TestEntries:
    def test_legacy_uris_get_a_uri(self):
        """An app with ``uris`` and no ``fetch`` is one for a Marathon from before ``fetch``
        (the daemon plans a listed app the same way): the entry is a URI in ``uris``."""
        app = docker_app("/old", uris=["https://files.example.com/a.tgz"])
        out = injected(app)
        assert out["uris"] == ["https://files.example.com/a.tgz", URI]
        assert "fetch" not in out

    def test_fetch_wins_when_both_are_there(self):
        app = docker_app("/both", uris=[], fetch=[])
        out = injected(app)
        assert (out["fetch"], out["uris"]) == ([ENTRY], [])

    @pytest.mark.parametrize("app", [
        docker_app("/out", opted_in=False, fetch=[USER_ENTRY]),
        docker_app("/out", labels={LABEL: "false"}),
        docker_app("/hub", "nginx:1.25", fetch=[USER_ENTRY]),
        docker_app("/quay", "quay.io/coreos/etcd:3"),
        docker_app("/ucr", kind="MESOS"),
    ], ids=["not-opted-in", "label-false", "docker-hub", "unconfigured", "ucr"])
    def test_apps_the_planner_leaves_alone_are_unchanged(self, app):
        result = inject(app, INJECTOR)
        assert result.document == app
        assert result.findings == ()

    def test_an_app_outside_the_allow_list_is_unchanged(self):
        injector = injector_for("/team-a/*")
        app = docker_app("/team-b/web", fetch=[USER_ENTRY])
        assert injected(app, injector) == app

    def test_an_app_outside_the_allow_list_loses_an_entry_of_ours(self):
        """The daemon would remove it: so does inject, keeping the user's entries."""
        injector = injector_for("/team-a/*")
        result = inject(docker_app("/team-b/web", fetch=[ENTRY, USER_ENTRY]), injector)
        assert result.document["fetch"] == [USER_ENTRY]
        assert [str(f) for f in result.changes] == [
            f"/team-b/web: must not carry the entry (app is not allowed credentials for "
            f"{REGISTRY}); would remove {URI}"]

    def test_a_correct_entry_is_kept_once(self):
        app = docker_app("/ok", fetch=[USER_ENTRY, ENTRY])
        result = inject(app, INJECTOR)
        assert result.document == app
        assert result.findings == ()

    def test_a_wrong_entry_of_ours_is_replaced_in_place(self):
        first = {"uri": "https://files.example.com/first.tgz"}
        app = docker_app("/moved", fetch=[first, {"uri": OLD_URI, "cache": True}, USER_ENTRY])
        result = inject(app, INJECTOR)
        assert result.document["fetch"] == [first, ENTRY, USER_ENTRY]
        assert [f.kind for f in result.findings] == ["replace"]

    def test_our_entry_with_wrong_flags_is_replaced(self):
        app = docker_app("/cached", fetch=[{**ENTRY, "cache": True}])
        assert injected(app)["fetch"] == [ENTRY]

    def test_another_controllers_entry_is_a_conflict_left_alone(self):
        app = docker_app("/shared", fetch=[{"uri": OTHER_CONTROLLERS}])
        result = inject(app, INJECTOR)
        assert result.document == app
        assert [str(f) for f in result.findings] == [
            "/shared: conflict (another owner's entry: controller team-b); left alone"]
        assert result.changes == ()

    def test_our_name_at_a_location_never_ours_is_a_conflict(self):
        """Not in ``storage.previous_locations``: a look-alike, or a second controller of the
        same name; the daemon leaves it alone, and so does inject."""
        app = docker_app("/stray", fetch=[{"uri": STRAY_URI}])
        result = inject(app, INJECTOR)
        assert result.document == app
        assert [f.kind for f in result.findings] == ["conflict"]
        assert "file:///elsewhere" in result.findings[0].detail

    def test_a_named_controller_uses_its_own_bundle(self):
        uri = f"file://{BUNDLES}/{bundle_name(REGISTRY, 'team-a')}"
        injector = injector_for(controller={"name": "team-a"})
        assert injected(docker_app("/a", fetch=[]), injector)["fetch"] == [{**ENTRY, "uri": uri}]
        result = inject(docker_app("/b", fetch=[ENTRY]), injector)  # the default controller's
        assert [f.kind for f in result.findings] == ["conflict"]

    @pytest.mark.parametrize(("fields", "message"), [
        ({"labels": {LABEL: True}}, f"invalid app: label {LABEL} is not text"),
        ({"fetch": [{"url": "x"}]}, "invalid app: fetch[0] is not an object with a uri"),
        ({"id": 7}, "invalid app: the app has no id"),
    ])
    def test_an_invalid_app_is_unchanged_and_named(self, fields, message):
        apps = [docker_app("/fine", fetch=[]), {**docker_app("/bad"), **fields}]
        result = inject(apps, INJECTOR)
        assert result.document[1] == apps[1]
        assert result.document[0]["fetch"] == [ENTRY]
        name = "[1]" if "id" in fields else "/bad"
        assert [str(f) for f in result.invalid] == [f"{name}: {message}"]


_OURS_RIGHT = ENTRY
_OURS_WRONG = {"uri": OLD_URI}
_ENTRIES = st.lists(st.sampled_from([USER_ENTRY, {"uri": "https://x.example.com/b.zip"},
                                     _OURS_RIGHT, _OURS_WRONG, {"uri": OTHER_CONTROLLERS}]),
                    max_size=4)


@st.composite
def apps(draw: st.DrawFn) -> dict[str, Any]:
    """An app a pipeline may hold: opted in or not, on a configured registry or not, with
    ``fetch``, legacy ``uris`` or neither, and any mix of entries."""
    label = draw(st.sampled_from(["true", " True ", "false", None]))
    image = draw(st.sampled_from([f"{REGISTRY}/shop/web:1", "nginx:1", "quay.io/x/y:2"]))
    app = docker_app(draw(st.sampled_from(["/shop/web", "/team-a/api"])), image,
                     labels={LABEL: label} if label is not None else {})
    field = draw(st.sampled_from(["fetch", "uris", None]))
    if field is not None:
        entries = draw(_ENTRIES)
        app[field] = [e["uri"] for e in entries] if field == "uris" else entries
    return app


class TestProperties:
    @given(apps(), st.sampled_from([(), ("/shop/*",)]))
    def test_the_daemon_plans_no_change_for_an_injected_app(self, app, allowed):
        injector = injector_for(*allowed)
        out = inject(app, injector).document
        daemon = injector.planner
        decision = daemon.eligibility(out)
        location = BundleLocation(uri=URI) if decision.registry else None
        assert not daemon.plan(out, decision, location).changed
        again = inject(out, injector)
        assert again.document == out
        assert again.changes == ()
        if "fetch" in app or "uris" in app:
            assert same_json_but_ours(app, out)


class TestParsing:
    def test_equivalent_json_out(self):
        text = '{"id": "/a", "cpus": 0.1, "mem": 1.0, "big": 12345678901234567890, ' \
               '"s": "caf\\u00e9 \\ud83d\\ude80", "n": null, "t": true, "nested": [[], {}]}'
        document = parse_document(text, "app.json")
        assert json.loads(render(document)) == json.loads(text)
        assert render(document).isascii()

    @pytest.mark.parametrize(("text", "problem"), [
        ('{"id": "/a",}', "app.json: not valid JSON (line 1, column 13: Expecting property "
                          "name enclosed in double quotes)"),
        ("", "app.json: is empty: expected an app, a list of apps or a group, as JSON"),
        ("  \n", "app.json: is empty"),
        ('{"id": "/a", "id": "/b"}', 'app.json: refused: the key "id" appears twice in one '
                                     "object"),
        ('{"cpus": NaN}', "app.json: refused: NaN is not JSON"),
        ('{"cpus": 1e999}', "app.json: refused: the number 1e999 is too large"),
    ])
    def test_what_is_not_json_is_named(self, text, problem):
        with pytest.raises(ConfigError) as raised:
            parse_document(text, "app.json")
        assert raised.value.problems[0].startswith(problem)


def store(storage: dict[str, Any]) -> BundleStore:
    """The store the wiring builds for this ``storage`` section."""
    return store_from_settings(
        settings_from_mapping({**config("/b"), "storage": storage}, {}, offline=True).storage)


class TestStores:
    """``fixed_location`` is what ``location`` serves, known without I/O."""

    async def test_memory_and_filesystem(self, tmp_path):
        memory = MemoryStore()
        assert await memory.location("b.tar.gz") == memory.fixed_location("b.tar.gz")
        files = store({"filesystem": {"path": str(tmp_path / "bundles")}})
        location = files.fixed_location("b.tar.gz")
        assert location == BundleLocation(uri=f"file://{tmp_path}/bundles/b.tar.gz")
        assert await files.location("b.tar.gz") == location
        assert not (tmp_path / "bundles").exists()

    @pytest.mark.parametrize(("s3", "uri"), [
        ({"bucket": "ops", "prefix": "pull"}, "s3a://ops/pull/b.tar.gz"),
        ({"bucket": "ops", "region": "eu-west-1", "uri_style": "https"},
         "https://ops.s3.eu-west-1.amazonaws.com/b.tar.gz"),
        ({"bucket": "ops", "endpoint_url": "http://127.0.0.1:1/", "uri_style": "https",
          "prefix": "p"}, "http://127.0.0.1:1/ops/p/b.tar.gz"),
    ])
    async def test_s3_stable_styles(self, s3, uri):
        """No request is made: nothing listens at the endpoint, and no AWS credential is set."""
        s3_store = store({"s3": s3})
        assert s3_store.fixed_location("b.tar.gz") == BundleLocation(uri=uri)
        assert await s3_store.location("b.tar.gz") == BundleLocation(uri=uri)

    def test_s3_presigned_is_not_known_offline(self):
        presigned = store({"s3": {"bucket": "ops", "uri_style": "presigned"}})
        assert presigned.fixed_location("b.tar.gz") is None


class TestOfflineConfig:
    """``inject`` loads the config offline: what it names for credentials is not looked at."""

    @pytest.mark.parametrize("credentials", [
        {"username": "robot", "password_env": "UNSET_PASSWORD"},
        {"username": "robot", "password_file": "no-such-file"},
        {"docker_config": "no-such-config.json"},
    ], ids=["variable", "password-file", "docker-config"])
    def test_named_credentials_need_not_exist(self, credentials):
        doc = {**config("/b"), "registries": [{"host": REGISTRY, "credentials": credentials,
                                               "ca_file": "no-such-ca.pem"}]}
        with pytest.raises(ConfigError):
            settings_from_mapping(doc, {})
        assert settings_from_mapping(doc, {}, offline=True).registries[0].registry == REGISTRY

    def test_the_rest_is_still_checked(self):
        doc = {**config("/b"), "storage": {"filesystem": {"path": "relative"}}}
        with pytest.raises(ConfigError) as raised:
            settings_from_mapping(doc, {}, offline=True)
        assert raised.value.problems == ["storage.filesystem.path: must be an absolute path"]


# -- the command --------------------------------------------------------------------------------


@pytest.fixture
def conf(tmp_path) -> Path:
    return write_config(tmp_path, config(BUNDLES))


def stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def command(capsys, *argv: str | Path) -> tuple[int, str, str]:
    code = run([str(a) for a in argv], {})
    out, err = capsys.readouterr()
    return code, out, err


RAW = docker_app("/shop/web", fetch=[USER_ENTRY])


class TestCommand:
    def test_file_in_json_out(self, capsys, conf, tmp_path):
        path = tmp_path / "app.json"
        path.write_text(json.dumps(RAW))
        code, out, err = command(capsys, "inject", "-c", conf, path)
        assert (code, err) == (0, "")
        assert json.loads(out)["fetch"] == [USER_ENTRY, ENTRY]
        assert same_json_but_ours(RAW, json.loads(out))
        assert not Path(BUNDLES).exists()  # nothing made on the pipeline's host

    def test_stdin_in_json_out(self, capsys, conf, monkeypatch):
        stdin(monkeypatch, json.dumps([RAW]).encode())
        code, out, _ = command(capsys, "inject", "-c", conf)
        assert code == 0
        assert json.loads(out)[0]["fetch"] == [USER_ENTRY, ENTRY]

    def test_check_fails_on_the_raw_json_and_passes_on_the_injected(
            self, capsys, conf, monkeypatch):
        stdin(monkeypatch, json.dumps(RAW).encode())
        code, out, err = command(capsys, "inject", "--check", "-c", conf, "-")
        assert (code, err) == (1, "")
        assert out == (f"/shop/web: lacks its entry; would add {json.dumps(ENTRY, sort_keys=True)}"
                       "\n")
        stdin(monkeypatch, json.dumps(RAW).encode())
        code, printed, _ = command(capsys, "inject", "-c", conf)
        assert code == 0
        stdin(monkeypatch, printed.encode())
        assert command(capsys, "inject", "--check", "-c", conf) == (0, "", "")

    def test_check_names_a_wrong_entry(self, capsys, conf, tmp_path):
        path = tmp_path / "app.json"
        path.write_text(json.dumps(docker_app("/shop/web", fetch=[{"uri": OLD_URI}])))
        code, out, _ = command(capsys, "inject", "--check", "-c", conf, path)
        assert code == 1
        assert out.startswith(f"/shop/web: carries a wrong entry ({OLD_URI}); would replace it "
                              "with {")

    def test_an_invalid_app_is_printed_unchanged_and_fails(self, capsys, conf, tmp_path):
        bad = docker_app("/shop/bad", labels={LABEL: ["true"]})
        path = tmp_path / "apps.json"
        path.write_text(json.dumps([RAW, bad]))
        code, out, err = command(capsys, "inject", "-c", conf, path)
        assert code == 1
        printed = json.loads(out)
        assert printed[1] == bad
        assert printed[0]["fetch"] == [USER_ENTRY, ENTRY]
        assert err == f"/shop/bad: invalid app: label {LABEL} is not text\n"
        code, out, err = command(capsys, "inject", "--check", "-c", conf, path)
        assert code == 1
        assert "/shop/bad: invalid app" in err
        assert "/shop/bad" not in out

    def test_a_conflict_is_named_and_does_not_fail(self, capsys, conf, tmp_path):
        path = tmp_path / "app.json"
        shared = docker_app("/shop/shared", fetch=[{"uri": OTHER_CONTROLLERS}])
        path.write_text(json.dumps(shared))
        code, out, err = command(capsys, "inject", "-c", conf, path)
        assert (code, json.loads(out)) == (0, shared)
        assert "/shop/shared: conflict (another owner's entry: controller team-b)" in err
        assert command(capsys, "inject", "-q", "--check", "-c", conf, path) == (0, "", "")

    @pytest.mark.parametrize(("data", "message"), [
        (b'{"id": "/a", ', "error: stdin: not valid JSON (line 1, column 14: Expecting "
                           "property name enclosed in double quotes)"),
        (b"\xff\xfe{}", "error: stdin: is not UTF-8 text"),
        (b"", "error: stdin: is empty"),
    ])
    def test_input_that_is_not_json_exits_2(self, capsys, conf, monkeypatch, data, message):
        stdin(monkeypatch, data)
        code, out, err = command(capsys, "inject", "-c", conf)
        assert (code, out) == (2, "")
        assert err.startswith(message)
        assert "Traceback" not in err

    def test_a_missing_file_exits_2(self, capsys, conf, tmp_path):
        code, out, err = command(capsys, "inject", "-c", conf, tmp_path / "nope.json")
        assert (code, out) == (2, "")
        assert err == f"error: {tmp_path / 'nope.json'}: cannot read it (No such file or " \
                      "directory)\n"

    def test_a_presigned_store_exits_2_before_any_output(self, capsys, tmp_path, monkeypatch):
        conf = write_config(tmp_path, config(
            BUNDLES, storage={"s3": {"bucket": "ops", "uri_style": "presigned"}}))
        stdin(monkeypatch, json.dumps(RAW).encode())
        for check in ([], ["--check"]):
            code, out, err = command(capsys, "inject", *check, "-c", conf)
            assert (code, out) == (2, "")
            assert "cannot know the bundle URI offline" in err
            assert "uri_style s3a or https" in err

    def test_s3a_config_injects_the_s3a_uri(self, capsys, tmp_path, monkeypatch):
        conf = write_config(tmp_path, config(
            BUNDLES, storage={"s3": {"bucket": "ops", "prefix": "pull"}}))
        stdin(monkeypatch, json.dumps(RAW).encode())
        code, out, _ = command(capsys, "inject", "-c", conf)
        assert code == 0
        assert json.loads(out)["fetch"][-1] == {
            **ENTRY, "uri": f"s3a://ops/pull/{bundle_name(REGISTRY)}"}

    def test_the_group_of_a_filesystem_store_need_not_exist_here(self, capsys, tmp_path,
                                                                 monkeypatch):
        conf = write_config(tmp_path, config(BUNDLES, storage={"filesystem": {
            "path": BUNDLES, "group": "no-such-group-on-this-host"}}))
        stdin(monkeypatch, json.dumps(RAW).encode())
        code, out, err = command(capsys, "inject", "-c", conf)
        assert (code, err) == (0, "")
        assert json.loads(out)["fetch"][-1] == ENTRY

    def test_help_has_an_example(self, capsys):
        with pytest.raises(SystemExit) as exited:
            run(["inject", "--help"], {})
        assert exited.value.code == 0
        assert "example:\n  pullsecret-controller inject" in capsys.readouterr().out
