"""A test image built offline as an OCI layout, so no docker engine is needed to push one."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def build_oci_layout(directory: Path, tag: str = "1") -> None:
    """Write a one-layer linux/amd64 image as an OCI layout, so no docker engine is needed.

    The single gzipped layer holds ``hello.txt``; ``tag`` becomes the
    ``org.opencontainers.image.ref.name`` annotation, i.e. ``oci:<directory>:<tag>`` for skopeo.
    """
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = sha256_digest(data)
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    content = b"hello from the pullsecret-controller tests\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode, info.mtime = len(content), 0o644, 0
        tar.addfile(info, io.BytesIO(content))
    layer_tar = buf.getvalue()
    layer = put(gzip.compress(layer_tar, mtime=0))

    config = put(
        json_bytes(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/hello.txt"]},
                "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer_tar)]},
                "history": [{"created_by": "tests.services.build_oci_layout"}],
            }
        )
    )
    manifest_type = "application/vnd.oci.image.manifest.v1+json"
    manifest = put(
        json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
            }
        )
    )
    (directory / "oci-layout").write_bytes(json_bytes({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": manifest_type,
                **manifest,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_bytes(json_bytes(index))
