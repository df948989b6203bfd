"""The Python distributions: what the sdist and the wheel hold, and their license metadata.

Both are built once, offline, by PyPA's ``build`` with the venv's setuptools (``--no-isolation``)
from a copy of the working tree's files that git would commit (so neither the venv nor a stale
egg-info leaks in), the wheel from the sdist, as ``pip install`` of an sdist would.
"""

from __future__ import annotations

import email.parser
import hashlib
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.test_packaging import ROOT, _unavailable

NAME, VERSION = "marathon_pullsecret_controller", "0.1.0"
# Beside the package, what an operator installing from the sdist needs (README's Install).
SHIPPED_FILES = ("README.md", "LICENSE", "pyproject.toml", "MANIFEST.in",
                 "config/controller.example.yaml", "config/marathon-app.json")
SHIPPED_TREES = ("controller", "deploy")
# What setuptools writes into every sdist.
GENERATED = ("PKG-INFO", "setup.cfg")
# SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt (Debian ships the same bytes as
# /usr/share/common-licenses/Apache-2.0, where LICENSE was copied from).
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


@dataclass(frozen=True, slots=True)
class Built:
    sdist: Path
    wheel: Path
    log: str


def repository_files() -> list[str]:
    """The working tree's files that git tracks or would add (ignored ones left out)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        _unavailable("not a git checkout: the files to package are unknown")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    return [f for f in listed.decode().split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    source = tmp_path_factory.mktemp("source")
    for name in repository_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True, text=True, timeout=300, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Built(sdist=sdist, wheel=wheel, log=log)


def sdist_members(sdist: Path) -> set[str]:
    """File names in the sdist, relative to its top directory."""
    with tarfile.open(sdist) as archive:
        return {m.name.partition("/")[2] for m in archive.getmembers() if m.isfile()}


def test_sdist_holds_the_package_docs_and_deployment_files(built: Built) -> None:
    """The sdist is exactly the package, README, LICENSE, pyproject, the example configs and
    deploy/, plus what setuptools generates: no tests, charts, benchmarks or caches."""
    tracked = repository_files()
    expected = {*SHIPPED_FILES, *GENERATED,
                *(f for f in tracked if f.startswith(tuple(t + "/" for t in SHIPPED_TREES)))}
    members = sdist_members(built.sdist)
    egg_info = {m for m in members if m.startswith(f"{NAME}.egg-info/")}
    assert members - egg_info == expected


def test_sdist_check_catches_a_stray_test_file(built: Built) -> None:
    """The member check is not vacuous: the tests setuptools adds by default are known to it."""
    assert any(f.startswith("tests/test") for f in repository_files())
    assert not any(m.startswith("tests/") for m in sdist_members(built.sdist))


def test_wheel_holds_the_package_and_the_license(built: Built) -> None:
    """The wheel has the controller package, its data files, and LICENSE under .dist-info."""
    with zipfile.ZipFile(built.wheel) as archive:
        names = set(archive.namelist())
    dist_info = f"{NAME}-{VERSION}.dist-info/"
    package = {n for n in names if not n.startswith(dist_info)}
    assert {n.partition("/")[0] for n in package} == {"controller"}
    assert {"controller/py.typed", "controller/config_schema.json"} <= package
    assert f"{dist_info}licenses/LICENSE" in names


def test_metadata_names_the_license_by_its_spdx_expression(built: Built) -> None:
    """Core metadata carries License-Expression and License-File (PEP 639), and no legacy
    free-text License field."""
    with zipfile.ZipFile(built.wheel) as archive:
        text = archive.read(f"{NAME}-{VERSION}.dist-info/METADATA").decode()
    metadata = email.parser.Parser().parsestr(text, headersonly=True)
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["License"] is None


def test_build_warns_of_no_deprecation(built: Built) -> None:
    """setuptools says nothing is deprecated (the table form of `license` stops building after
    2027-02-18)."""
    assert "deprecated" not in built.log.lower(), built.log[-4000:]


def test_license_is_the_apache_2_0_text() -> None:
    """LICENSE is byte for byte the text the ASF publishes at
    https://www.apache.org/licenses/LICENSE-2.0.txt (11358 bytes, terms and appendix)."""
    data = (ROOT / "LICENSE").read_bytes()
    assert len(data) == 11358
    assert hashlib.sha256(data).hexdigest() == APACHE_2_0_SHA256
