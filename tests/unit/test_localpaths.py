"""Local paths are cut out of texts the ops port shows; app ids and URLs are left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import settings_from_mapping
from controller.localpaths import LocalPaths

CUT = LocalPaths({"storage.filesystem.path": Path("/mnt/shared/pullsecrets"),
                  "registries[0].credentials.password_file": Path("/etc/pc/secrets/pw")},
                 roots=["etc", "mnt", "tmp", "home"])


@pytest.mark.parametrize(("text", "shown"), [
    # storage errors (controller/storage/fs.py) name the bundle directory and its files
    ("cannot write /mnt/shared/pullsecrets/pullsecret-x.tar.gz: read-only file system",
     "cannot write <storage.filesystem.path>/pullsecret-x.tar.gz: read-only file system"),
    ("cannot list /mnt/shared/pullsecrets: permission denied",
     "cannot list <storage.filesystem.path>: permission denied"),
    ("the directory /mnt/shared/pullsecrets does not exist.",
     "the directory <storage.filesystem.path> does not exist."),
    # credential sources (controller/credentials/) name their files
    ("cannot read password file /etc/pc/secrets/pw: permission denied",
     "cannot read password file <registries[0].credentials.password_file>: permission denied"),
    # a path the config does not name, an OSError's file name, a file URI
    ("[Errno 13] Permission denied: '/tmp/x/y'", "[Errno 13] Permission denied: '<local path>'"),
    ("cannot write /mnt/shared/pullsecrets-old/x", "cannot write <local path>"),
    ("fetch file:///home/u/docker.tar.gz failed", "fetch file://<local path> failed"),
])
def test_paths_become_config_keys_or_a_placeholder(text, shown):
    assert CUT(text) == shown


@pytest.mark.parametrize("text", [
    "App '/shop/web' is locked by one or more deployments",
    "GET https://marathon:8080/v2/apps/etc/web failed",
    "s3://bucket/etc/pullsecret-x.tar.gz: AccessDenied",
    "registry.example.com:5000/etc/app:1 is not configured",
])
def test_app_ids_and_urls_are_left_alone(text):
    assert CUT(text) == text


def test_the_config_names_its_paths(tmp_path):
    """Every path anywhere in the settings is found, under the key the config gives it."""
    (tmp_path / "pw").write_text("not read here\n")
    (tmp_path / "bundles").mkdir()
    settings = settings_from_mapping({
        "marathon": {"urls": ["http://marathon:8080"]},
        "registries": [{"host": "r.example.com", "credentials": {
            "username": "u", "password_file": str(tmp_path / "pw")}}],
        "storage": {"filesystem": {"path": str(tmp_path / "bundles")}},
    }, {})
    cut = LocalPaths.of(settings)
    assert cut(f"cannot read password file {tmp_path}/pw: gone") == (
        "cannot read password file <registries[0].credentials.password_file>: gone")
    assert cut(f"cannot list {tmp_path}/bundles: gone") == (
        "cannot list <storage.filesystem.path>: gone")
    assert cut(f"cannot write {tmp_path}/other") == "cannot write <local path>"
