"""The app-list decoder keeps the planned fields only, decodes a list in pieces as it comes
into the very list one decoding of the whole gives, and reads odd answers as json.loads does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from controller.applist import AppListDecoder, AppListStream, ListedApp, as_raw
from controller.plan import PLANNED_FIELDS
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


def cut(entries: list[Any]) -> list[Any]:
    return [as_raw(e) if isinstance(e, ListedApp) else e for e in entries]


def test_typed_and_slow_paths_cut_alike():
    """Every entry, however odd, keeps its planned fields as they were, and nothing else."""
    decoder = AppListDecoder(LABEL)
    listed = decoder.decode(json.dumps({"apps": ENTRIES}).encode())
    assert listed is not None
    assert cut(listed.apps) == CUT
    assert cut(decoder.convert(json.loads(json.dumps(ENTRIES))).apps) == CUT


def paths(value: Any, prefix: str = "") -> set[str]:
    if not isinstance(value, dict) or not value:
        return {prefix} if prefix else set()
    return {p for key, inner in value.items() for p in paths(inner, f"{prefix}{key}.")}


def test_the_cut_copy_holds_the_planned_fields_and_no_other():
    """What a listed app keeps is ``plan.PLANNED_FIELDS``: an app with every field set (and
    more) keeps exactly those paths, the opt-in label for ``<label>``."""
    full = {"id": "/a", "labels": {LABEL: "true", "other": "x"},
            "container": {"type": "DOCKER", "volumes": [], "docker": {"image": "r/i:1",
                                                                      "privileged": False}},
            "fetch": [], "uris": [], "cmd": "x", "env": {"A": "b"}}
    decoder = AppListDecoder(LABEL)
    listed = decoder.decode(json.dumps({"apps": [full]}).encode())
    assert listed is not None
    kept = {p.rstrip(".") for p in paths(as_raw(listed.apps[0]))}
    assert kept == {p.replace("<label>", LABEL) for p in PLANNED_FIELDS}


def test_without_a_label_every_label_is_kept():
    decoder = AppListDecoder()
    listed = decoder.decode(json.dumps({"apps": ENTRIES[:1]}).encode())
    assert listed is not None
    assert as_raw(listed.apps[0])["labels"] == {"team": 5, LABEL: "true"}


@pytest.mark.parametrize("body", [
    b'{"apps": [{"id": "/a", "mem": NaN}]}',
    b'\xef\xbb\xbf{"apps": [{"id": "/a"}]}',
    b'{"apps": [{"id": "/a", "note": "\\ud800"}]}',
    b'{"apps": {"id": "/a"}}', b"[]", b"not json",
], ids=["nan", "bom", "lone-surrogate", "apps-object", "list", "not-json"])
def test_answers_the_typed_decoder_refuses_are_left_to_json_loads(body):
    assert AppListDecoder(LABEL).decode(body) is None
    stream = fed(body, 7)
    assert stream.result() is None
    assert stream.whole  # small: held whole, for json.loads
    assert bytes(stream.view()) == body


# -- decoded as it comes -------------------------------------------------------------------------

def big_app(i: int) -> dict[str, Any]:
    """About 2 KB, with a nested list of objects that begin with an id (deployments), where a
    cut between two apps would also match."""
    return {"id": f"/team/app-{i:05d}", "cmd": "sleep 1", "env": {"N": "x" * 1500},
            "labels": {LABEL: "true" if i % 3 else "false", "team": "a"},
            "container": {"type": "DOCKER", "docker": {"image": f"r.example.com/a/b:{i}"}},
            "fetch": [{"uri": f"https://x/{i}.tgz"}],
            "deployments": [{"id": f"d-{i}-1"}, {"id": f"d-{i}-2"}] if i % 5 == 0 else []}


APPS = [big_app(i) for i in range(2000)]  # about 3.5 MB


def fed(body: bytes, chunk: int, stream: AppListStream | None = None) -> AppListStream:
    stream = stream or AppListDecoder(LABEL).stream()
    for start in range(0, len(body), chunk):
        stream.append(body[start:start + chunk])
    return stream


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")], ids=["compact", "spaced"])
@pytest.mark.parametrize("chunk", [997, 65536, 1 << 20])
def test_a_list_is_decoded_in_pieces_into_the_list_decoded_whole(separators, chunk):
    """Cut between apps as the answer comes, never holding it whole (only about a MiB at a
    time), into exactly the list one decoding of the whole answer gives."""
    body = ("\n " + json.dumps({"apps": APPS}, separators=separators) + "\n").encode()
    decoder = AppListDecoder(LABEL)
    whole = decoder.decode(body)
    assert whole is not None
    stream = decoder.stream()
    held = 0
    for start in range(0, len(body), chunk):
        stream.append(body[start:start + chunk])
        held = max(held, len(stream.view()))
    listed = stream.result()
    assert listed is not None
    assert cut(listed.apps) == cut(whole.apps)
    assert not stream.whole
    assert held < 2 << 20 < len(body)


def test_an_answer_of_another_shape_is_held_whole_and_decoded_at_the_end():
    """An answer that does not begin {"apps":[ (another key first) is never cut."""
    body = json.dumps({"x": 1, "apps": APPS}).encode()
    stream = fed(body, 65536)
    listed = stream.result()
    assert listed is not None
    assert len(listed.apps) == len(APPS)
    assert stream.whole


@pytest.mark.parametrize("tail", [b',"x":1}', b"]", b"]}]"], ids=["member", "open", "extra"])
def test_an_odd_end_after_a_cut_asks_for_a_reading_of_the_whole(tail):
    """Pieces already decoded are gone: an end the decoder refuses says so (``None``, not
    ``whole``), for the client to read the answer again."""
    body = json.dumps({"apps": APPS}, separators=(",", ":")).encode()[:-1] + tail
    stream = fed(body, 65536)
    assert stream.result() is None
    assert not stream.whole


def test_garbage_after_a_cut_is_refused_at_the_end():
    body = json.dumps({"apps": APPS}, separators=(",", ":")).encode()
    middle = body.index(b'"cmd":"sleep 1"', len(body) // 2)
    stream = fed(body[:middle] + b"NaN," + body[middle:], 65536)
    assert stream.result() is None
    assert not stream.whole


async def test_an_answer_only_json_loads_reads_still_lists(aiohttp_server, session):
    """A list with a NaN somewhere (json.loads reads it) lists its apps, cut alike."""
    body = b'{"apps": [{"id": "/a", "mem": NaN, "labels": {"x": "y"}}, {"id": "/b"}]}'
    server = await aiohttp_server(_answering(body))
    apps = await client(session, str(server.make_url("")).rstrip("/")).list_apps()
    assert cut(apps) == [{"id": "/a", "labels": {"x": "y"}}, {"id": "/b"}]


@pytest.mark.parametrize("odd", [b'"mem":NaN,', b'"note":"\\ud800",'],
                         ids=["nan", "lone-surrogate"])
async def test_a_long_answer_refused_after_a_cut_is_read_again_whole(aiohttp_server, session,
                                                                      odd):
    """Past its first piece, a list the typed decoder refuses is read once more, whole, and
    accepted or refused as ``json.loads`` reads it."""
    apps = [dict(a) for a in APPS]
    body = json.dumps({"apps": apps}, separators=(",", ":")).encode()
    at = body.index(b'"cmd"', len(body) - 5000)
    body = body[:at] + odd + body[at:]
    requests: list[str] = []
    server = await aiohttp_server(_answering(body, requests))
    listed = await client(session, str(server.make_url("")).rstrip("/")).list_apps()
    assert [a.id for a in listed] == [a["id"] for a in APPS]
    assert requests == ["/v2/apps", "/v2/apps"]


def _answering(body: bytes, requests: list[str] | None = None) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        if requests is not None:
            requests.append(request.path)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/apps", handler)
    return app
