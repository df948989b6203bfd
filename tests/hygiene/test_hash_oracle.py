"""No answer of the ops port lets anyone test a guessed password offline.

A bundle is a deterministic archive of its credential, so a digest of it (or of the
``config.json`` inside, or of the password) shown anywhere lets whoever reads it build the
archive for each guess and compare: the full SHA-256 on ``/status`` and 12 hex digits of it on
the page did exactly that. This runs the daemon with a known password, builds the bundle an
attacker would build for the right guess, and finds none of its digests (nor an 8-digit piece
of one) in any answer; the fingerprint shown is keyed by a secret of the process.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json

import aiohttp

from controller.archive import build_bundle, bundle_content, config_json
from controller.config import settings_from_mapping
from controller.fingerprint import fingerprint
from controller.model import RegistryCredential, Secret
from controller.plan import bundle_name
from controller.simulator import MarathonSimulator, MarathonState
from tests.factories import PASSWORD_ENV, REGISTRY, docker_app
from tests.integration.runner import Daemon, daemon_config
from tests.services.process import eventually

PASSWORD = "Guess-me-if-you-can-7c1d"
USER = "robot"  # tests.factories.registry_entry's
PATHS = ("/status", "/status?limit=1", "/status?limit=1&after=/oracle/bad", "/", "/?limit=1",
         "/metrics", "/healthz", "/readyz", "/nothing-here")
PIECE = 8


def digests(data: bytes) -> dict[str, bytes]:
    """Every unkeyed digest an attacker might compare, raw."""
    return {name: hashlib.new(name, data).digest()
            for name in ("sha256", "sha1", "md5", "sha512", "sha224", "sha384", "blake2b",
                         "blake2s", "sha3_256")}


def pieces(digest: bytes) -> set[str]:
    """Every run of ``PIECE`` characters of the digest in hex, and of 11 in base64."""
    hexed, b64 = digest.hex(), base64.b64encode(digest).decode()
    return ({hexed[i:i + PIECE] for i in range(len(hexed) - PIECE + 1)}
            | {b64[i:i + 11] for i in range(len(b64) - 11 + 1)})


async def test_no_answer_holds_a_digest_of_the_credential(tmp_path):
    state = MarathonState(deployment_seconds=0)
    state.load_apps([docker_app("/oracle/web"), docker_app("/oracle/bad",
                                                           image=f"{REGISTRY}/Not Valid:1")])
    env = {PASSWORD_ENV: PASSWORD}
    answers: dict[str, str] = {}  # path -> body
    headers: dict[str, str] = {}
    async with MarathonSimulator(state, heartbeat_seconds=0.5) as sim:
        settings = settings_from_mapping(daemon_config(sim.url, tmp_path), env)
        base = f"http://{settings.server.listen}"
        async with Daemon(settings, env), aiohttp.ClientSession() as session:
            async def published() -> bool:
                async with session.get(f"{base}/status") as response:
                    return bool(json.loads(await response.text())["registries"][REGISTRY][
                        "fingerprint"])

            await eventually(published, 15, "the bundle to be published")
            for path in PATHS:
                async with session.get(base + path) as response:
                    answers[path] = await response.text()
                    headers[path] = json.dumps(dict(response.headers))
    bundle = (tmp_path / "bundles" / bundle_name(REGISTRY)).read_bytes()
    guess = RegistryCredential(username=USER, password=Secret(PASSWORD))
    tar = bundle_content(REGISTRY, guess, "config.json")  # what an attacker can build
    assert gzip.decompress(bundle) == tar
    assert bundle != build_bundle(REGISTRY, guess, "config.json")  # but never the bytes served

    secrets = {"bundle": bundle, "tar": tar, "config.json": config_json(REGISTRY, guess),
               "password": PASSWORD.encode(), "user:password": f"{USER}:{PASSWORD}".encode()}
    forbidden = [(f"{name} {algorithm}", piece.lower())
                 for name, data in secrets.items()
                 for algorithm, digest in digests(data).items()
                 for piece in pieces(digest)]
    found = {(path, what) for path in PATHS for what, piece in forbidden
             if piece in (answers[path] + headers[path]).lower()}
    assert found == set()

    shown = json.loads(answers["/status"])["registries"][REGISTRY]["fingerprint"]
    sha256 = hashlib.sha256(bundle).hexdigest()
    assert shown == fingerprint(sha256)  # keyed by this process's secret key...
    for guessed_key in (b"", PASSWORD.encode(), sha256.encode(), REGISTRY.encode()):
        assert shown != hmac.new(guessed_key, sha256.encode(), hashlib.sha256).hexdigest()[
            :len(shown)]  # ...which no guess of ours reproduces
