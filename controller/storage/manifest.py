"""The JSON form of a ``BundleManifest``, shared by every backend."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from controller.model import BundleManifest

__all__ = ["manifest_from_json", "manifest_to_json"]


def manifest_to_json(manifest: BundleManifest) -> bytes:
    data: dict[str, Any] = {
        "registry": manifest.registry,
        "sha256": manifest.sha256,
        "format": manifest.format,
        "created_at": manifest.created_at.isoformat(),
        "refresh_at": manifest.refresh_at.isoformat(),
        "expires_at": manifest.expires_at.isoformat() if manifest.expires_at else None,
        "leader_epoch": manifest.leader_epoch,
    }
    return json.dumps(data, sort_keys=True, indent=2).encode() + b"\n"


def manifest_from_json(raw: bytes) -> BundleManifest:
    """Parse a stored record; raises ``ValueError`` (or ``KeyError``/``TypeError``) if damaged."""
    data = json.loads(raw)
    expires = data.get("expires_at")
    return BundleManifest(
        registry=data["registry"],
        sha256=data["sha256"],
        format=data["format"],
        created_at=datetime.fromisoformat(data["created_at"]),
        refresh_at=datetime.fromisoformat(data["refresh_at"]),
        expires_at=datetime.fromisoformat(expires) if expires else None,
        leader_epoch=data.get("leader_epoch"),
    )
