"""Credential bundles: the sandbox layout docker needs, byte-for-byte determinism, no leaks."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.archive import (
    build_bundle,
    bundle_content,
    config_json,
    content_hash,
    dockercfg_json,
    inspect_bundle,
)
from controller.errors import CredentialError
from controller.model import BundleFormat, RegistryCredential, Secret
from controller.reference import InvalidReferenceError

REG = "registry.example.com:5000"
PASSWORD = "s3cr3t-p@ss:word"
CRED = RegistryCredential(username="robot", password=Secret(PASSWORD))
TOKEN = "eyJhbGciOi.identity-token"
TOKEN_CRED = RegistryCredential(username="<token>", password=Secret(TOKEN), identity_token=True)
FORMATS: list[BundleFormat] = ["config.json", "dockercfg"]


def members(data: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = {}
        for info in tar.getmembers():
            f = tar.extractfile(info)
            out[info.name] = (info, f.read() if f else None)
        return out


def bundled_json(data: bytes, fmt: BundleFormat) -> Any:
    name = ".docker/config.json" if fmt == "config.json" else ".dockercfg"
    content = members(data)[name][1]
    assert content is not None
    return json.loads(content)


def tar_listing(tmp_path: Path, data: bytes) -> list[str]:
    archive = tmp_path / "docker.tar.gz"
    archive.write_bytes(data)
    result = subprocess.run(["tar", "-tvzf", str(archive)], capture_output=True, text=True,
                            check=True, env={**os.environ, "TZ": "UTC", "LC_ALL": "C"})
    return result.stdout.splitlines()


def decoded_auth(entry: dict[str, str]) -> str:
    return base64.b64decode(entry["auth"], validate=True).decode()


class TestLayout:
    def test_config_json_listing(self, tmp_path: Path) -> None:
        """``tar -tvzf`` shows the recipe's layout: .docker/ 0700 then .docker/config.json 0600."""
        lines = tar_listing(tmp_path, build_bundle(REG, CRED, "config.json"))
        assert len(lines) == 2
        assert re.fullmatch(r"drwx------ root/root\s+0 1970-01-01 00:00 \.docker/", lines[0])
        assert re.fullmatch(r"-rw------- root/root\s+\d+ 1970-01-01 00:00 \.docker/config\.json",
                            lines[1])

    def test_dockercfg_listing(self, tmp_path: Path) -> None:
        """The legacy format is a single 0600 ``.dockercfg`` at the archive root."""
        lines = tar_listing(tmp_path, build_bundle(REG, CRED, "dockercfg"))
        assert len(lines) == 1
        assert re.fullmatch(r"-rw------- root/root\s+\d+ 1970-01-01 00:00 \.dockercfg", lines[0])

    def test_extracts_into_sandbox_layout(self, tmp_path: Path) -> None:
        """Extracting with the real tar, as the fetcher does, yields HOME/.docker/config.json."""
        sandbox = tmp_path / "sandbox"
        sandbox.mkdir()
        archive = tmp_path / "docker.tar.gz"
        archive.write_bytes(build_bundle(REG, CRED, "config.json"))
        subprocess.run(["tar", "-C", str(sandbox), "-xzf", str(archive)], check=True)
        config = sandbox / ".docker" / "config.json"
        assert sorted(p.relative_to(sandbox).as_posix() for p in sandbox.rglob("*")) == [
            ".docker", ".docker/config.json"]
        assert ((sandbox / ".docker").stat().st_mode & 0o777, config.stat().st_mode & 0o777) == (
            0o700, 0o600)
        assert json.loads(config.read_text()) == json.loads(config_json(REG, CRED))

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_member_metadata_is_fixed(self, fmt: BundleFormat) -> None:
        """Every member is root-owned (0/0, root/root) with mtime 0."""
        infos = [info for info, _ in members(build_bundle(REG, CRED, fmt)).values()]
        assert {(i.uid, i.gid, i.uname, i.gname, i.mtime) for i in infos} == {
            (0, 0, "root", "root", 0)}

    def test_gzip_header_has_no_name_or_time(self) -> None:
        """The gzip header carries neither a file name nor a timestamp."""
        data = build_bundle(REG, CRED, "config.json")
        flags, mtime = data[3], int.from_bytes(data[4:8], "little")
        assert (data[:3], flags & 0x08, mtime) == (b"\x1f\x8b\x08", 0, 0)


class TestConfigJson:
    def test_auth_decodes_to_user_and_password(self) -> None:
        """``auth`` is base64 of ``user:password`` under the registry's key."""
        auths = json.loads(config_json(REG, CRED))["auths"]
        assert list(auths) == [REG]
        assert auths[REG] == {"auth": base64.b64encode(f"robot:{PASSWORD}".encode()).decode()}
        assert decoded_auth(auths[REG]) == f"robot:{PASSWORD}"

    @pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io"])
    def test_hub_uses_v1_index_key(self, registry: str) -> None:
        """Docker Hub credentials go under ``https://index.docker.io/v1/``."""
        assert list(json.loads(config_json(registry, CRED))["auths"]) == [
            "https://index.docker.io/v1/"]

    def test_registry_key_is_normalised(self) -> None:
        """A mixed-case configured host is written lowercase, as images are matched."""
        assert list(json.loads(config_json("Registry.Example.COM:5000", CRED))["auths"]) == [REG]

    def test_identity_token(self) -> None:
        """An identity token is written as ``identitytoken`` alone, with no ``auth``."""
        assert json.loads(config_json(REG, TOKEN_CRED)) == {
            "auths": {REG: {"identitytoken": TOKEN}}}

    def test_stable_serialisation(self) -> None:
        """The JSON has sorted keys, fixed indentation and a trailing newline."""
        text = config_json(REG, CRED).decode()
        auth = base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
        assert text == ('{\n  "auths": {\n    "registry.example.com:5000": {\n'
                        f'      "auth": "{auth}"\n    }}\n  }}\n}}\n')

    def test_non_ascii_credentials(self) -> None:
        """Non-ASCII user names and passwords are UTF-8 inside ``auth``; the JSON stays ASCII."""
        cred = RegistryCredential(username="jörg", password=Secret("pässwörd€"))
        data = config_json(REG, cred)
        assert data.isascii()
        assert decoded_auth(json.loads(data)["auths"][REG]) == "jörg:pässwörd€"


class TestDockercfg:
    def test_legacy_shape(self) -> None:
        """``.dockercfg`` maps the key straight to ``auth`` and an empty ``email``."""
        cfg = json.loads(dockercfg_json("docker.io", CRED))
        assert cfg == {"https://index.docker.io/v1/": {
            "auth": base64.b64encode(f"robot:{PASSWORD}".encode()).decode(), "email": ""}}

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_bundle_contains_the_json(self, fmt: BundleFormat) -> None:
        """The archived file is exactly the JSON the format function builds."""
        expected = config_json(REG, CRED) if fmt == "config.json" else dockercfg_json(REG, CRED)
        assert bundled_json(build_bundle(REG, CRED, fmt), fmt) == json.loads(expected)


class TestDeterminism:
    @pytest.mark.parametrize("fmt", FORMATS)
    def test_same_input_same_content_never_the_same_bytes(self, fmt: BundleFormat) -> None:
        """Two builds from equal credentials hold byte-identical tars, in different bytes (a
        random gzip comment): a hash of published bytes confirms no guessed password."""
        again = RegistryCredential(username="robot", password=Secret(PASSWORD))
        first, second = build_bundle(REG, CRED, fmt), build_bundle(REG, again, fmt)
        assert bundle_content(REG, CRED, fmt) == bundle_content(REG, again, fmt)
        assert inspect_bundle(first, fmt) == inspect_bundle(second, fmt)
        assert first != second
        assert gzip.decompress(first) == bundle_content(REG, CRED, fmt)

    @pytest.mark.parametrize(("registry", "credential", "fmt"), [
        (REG, RegistryCredential(username="robot", password=Secret(PASSWORD + "x")),
         "config.json"),
        (REG, RegistryCredential(username="robot2", password=Secret(PASSWORD)), "config.json"),
        ("other.example.com", CRED, "config.json"),
        (REG, CRED, "dockercfg"),
    ], ids=["password", "username", "registry", "format"])
    def test_any_change_changes_the_hash(self, registry: str, credential: RegistryCredential,
                                         fmt: BundleFormat) -> None:
        """A different password, user, registry or format gives a different content hash."""
        base = content_hash(bundle_content(REG, CRED, "config.json"))
        assert content_hash(bundle_content(registry, credential, fmt)) != base

    def test_content_hash_is_sha256_hex(self) -> None:
        """The hash is the plain lowercase hex SHA-256 of the bytes."""
        assert content_hash(b"") == (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

    def test_archive_is_padded_like_gnu_tar(self) -> None:
        """The tar stream is a whole number of 10240-byte records, as GNU tar writes."""
        assert len(gzip.decompress(build_bundle(REG, CRED, "config.json"))) % 10240 == 0


class TestSecrets:
    def test_credential_repr_hides_password(self) -> None:
        """Neither ``repr`` nor ``str`` of a credential shows the password."""
        assert PASSWORD not in repr(CRED)
        assert PASSWORD not in str(CRED)

    @pytest.mark.parametrize(("registry", "credential", "error"), [
        ("https://registry.example.com/", CRED, InvalidReferenceError),
        (REG, RegistryCredential(username="", password=Secret(PASSWORD)), CredentialError),
        (REG, RegistryCredential(username="a:b", password=Secret(PASSWORD)), CredentialError),
        (REG, RegistryCredential(username="robot", password=Secret(PASSWORD + "\udcff")),
         CredentialError),
    ], ids=["bad-registry", "empty-user", "colon-in-user", "unencodable-password"])
    def test_errors_never_carry_the_secret(self, registry: str, credential: RegistryCredential,
                                           error: type[Exception]) -> None:
        """A rejected input raises an error whose text and bundle frames hold no plain secret."""
        with pytest.raises(error) as info:
            build_bundle(registry, credential, "config.json")
        assert PASSWORD not in str(info.value)
        assert PASSWORD not in repr(info.value)
        frames = [entry.frame for entry in info.traceback
                  if Path(entry.frame.code.path).name in {"archive.py", "reference.py"}]
        assert frames
        assert all(PASSWORD not in repr(frame.f_locals) for frame in frames)


@given(username=st.text(min_size=1).filter(lambda u: ":" not in u), password=st.text())
def test_any_credential_round_trips(username: str, password: str) -> None:
    """Whatever the user and password, the bundled ``auth`` decodes back to ``user:password``."""
    cred = RegistryCredential(username=username, password=Secret(password))
    entry = bundled_json(build_bundle(REG, cred, "config.json"), "config.json")["auths"][REG]
    assert decoded_auth(entry) == f"{username}:{password}"
