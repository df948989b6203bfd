"""An in-memory ``BundleStore``: real enough for reconciler tests and dry runs.

Tests damage what it serves by editing ``bundles`` (or ``manifests``) directly.
"""

from __future__ import annotations

from controller.errors import InvalidBundleError
from controller.model import BundleLocation, BundleManifest

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self, uri_prefix: str = "memory://bundles") -> None:
        self.uri_prefix = uri_prefix
        self.bundles: dict[str, bytes] = {}
        self.manifests: dict[str, BundleManifest] = {}
        self.notes: dict[str, bytes] = {}
        self.writes = 0

    @property
    def home(self) -> str:
        return self.uri_prefix

    def fixed_location(self, name: str) -> BundleLocation:
        return BundleLocation(uri=f"{self.uri_prefix}/{name}")

    async def location(self, name: str) -> BundleLocation:
        return self.fixed_location(name)

    async def get_manifest(self, name: str) -> BundleManifest | None:
        return self.manifests.get(name)

    async def read_bundle(self, name: str, limit: int) -> bytes | None:
        data = self.bundles.get(name)
        if data is not None and len(data) > limit:
            raise InvalidBundleError(f"{name} is larger than {limit} bytes")
        return data

    async def put_bundle(self, name: str, data: bytes, manifest: BundleManifest) -> None:
        self.writes += 1
        self.bundles[name] = data
        self.manifests[name] = manifest

    async def delete(self, name: str) -> None:
        self.bundles.pop(name, None)
        self.manifests.pop(name, None)
        self.notes.pop(name, None)

    async def read_note(self, name: str, limit: int) -> bytes | None:
        data = self.notes.get(name)
        return None if data is None else data[:limit]

    async def write_note(self, name: str, data: bytes) -> None:
        self.notes[name] = data

    async def list_names(self) -> list[str]:
        return sorted(self.bundles.keys() | self.manifests.keys())

    async def cleanup(self) -> list[str]:
        return []
