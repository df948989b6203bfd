"""The app-list decoder keeps the planned fields only, and reads odd answers as json.loads does."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from controller.applist import AppListDecoder
from tests.adapters.marathon_helpers import client

LABEL = "pullsecret.enabled"
ENTRIES = [
    {"id": "/a", "cmd": "x", "env": {"K": "v"}, "labels": {"team": 5, LABEL: "true"},
     "container": {"type": "DOCKER", "volumes": [], "docker": {"image": "r/i:1", "network": "x"}},
     "fetch": [{"uri": "https://x/y.tgz", "extract": False}], "executorResources": {"mem": 1}},
    {"id": "/b", "labels": None, "container": "DOCKER", "fetch": {"uri": "x"}},
    {"id": "/c", "labels": [LABEL], "container": {"docker": None}, "uris": ["https://x"]},
    {"id": "/d", "labels": {LABEL: 1}, "container": {"type": 7, "docker": {"image": ["x"]}}},
    {"id": "/e"}, {"id": 7}, {"cmd": "no id"}, 5, 1.5, "x", None, True, [1, {"id": "/f"}],
]
CUT = [
    {"id": "/a", "labels": {LABEL: "true"},
     "container": {"type": "DOCKER", "docker": {"image": "r/i:1"}},
     "fetch": [{"uri": "https://x/y.tgz", "extract": False}]},
    {"id": "/b", "labels": None, "container": "DOCKER", "fetch": {"uri": "x"}},
    {"id": "/c", "labels": [LABEL], "container": {"docker": None}, "uris": ["https://x"]},
    {"id": "/d", "labels": {LABEL: 1}, "container": {"type": 7, "docker": {"image": ["x"]}}},
    {"id": "/e"}, {"id": 7}, {}, 5, 1.5, "x", None, True, [1, {"id": "/f"}],
]


def test_typed_and_slow_paths_cut_alike():
    """Every entry, however odd, keeps its planned fields as they were, and nothing else."""
    decoder = AppListDecoder(LABEL)
    listed = decoder.decode(json.dumps({"apps": ENTRIES}).encode())
    assert listed is not None
    assert decoder.planned(listed) == CUT
    assert decoder.planned(decoder.convert(json.loads(json.dumps(ENTRIES)))) == CUT


def test_without_a_label_every_label_is_kept():
    decoder = AppListDecoder()
    listed = decoder.decode(json.dumps({"apps": ENTRIES[:1]}).encode())
    assert listed is not None
    assert decoder.planned(listed)[0]["labels"] == {"team": 5, LABEL: "true"}


@pytest.mark.parametrize("body", [
    b'{"apps": [{"id": "/a", "mem": NaN}]}',
    b'\xef\xbb\xbf{"apps": [{"id": "/a"}]}',
    b'{"apps": [{"id": "/a", "note": "\\ud800"}]}',
    b'{"apps": {"id": "/a"}}', b"[]", b"not json",
], ids=["nan", "bom", "lone-surrogate", "apps-object", "list", "not-json"])
def test_answers_the_typed_decoder_refuses_are_left_to_json_loads(body):
    assert AppListDecoder(LABEL).decode(body) is None


async def test_an_answer_only_json_loads_reads_still_lists(aiohttp_server, session):
    """A list with a NaN somewhere (json.loads reads it) lists its apps, cut alike."""
    body = b'{"apps": [{"id": "/a", "mem": NaN, "labels": {"x": "y"}}, {"id": "/b"}]}'
    server = await aiohttp_server(_answering(body))
    apps = await client(session, str(server.make_url("")).rstrip("/")).list_apps()
    assert apps == [{"id": "/a", "labels": {"x": "y"}}, {"id": "/b"}]


def _answering(body: bytes) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/apps", handler)
    return app
