"""The storage port: what the publisher needs of a bundle store, and nothing of any backend."""

from __future__ import annotations

from typing import Protocol

from controller.model import BundleLocation, BundleManifest

__all__ = ["BundleStore"]


class BundleStore(Protocol):
    """Where bundles live, addressed by name (``pullsecret-<registry>.tar.gz``).

    Stores hold whatever is found under their location, so everything read is bounded and
    checked: ``read_bundle`` never returns more than ``limit`` bytes, and never anything but
    the bytes of a plain file or object.
    """

    @property
    def home(self) -> str:
        """Where tasks fetch every bundle of this store from: the URI of its directory or
        prefix, without a file name or query (``file:///mnt/shared/pullsecrets``,
        ``s3a://bucket/prefix``); an entry is this controller's only when it points here."""
        ...

    def fixed_location(self, name: str) -> BundleLocation | None:
        """What tasks fetch, when the config alone says it (no I/O, no credential); ``None``
        when it must be obtained from the store (a presigned URL is signed). ``inject`` plans
        with it offline; ``location`` returns it whenever it is not ``None``."""
        ...

    async def location(self, name: str) -> BundleLocation:
        """What tasks fetch; stable for a name, so a rotation needs no Marathon write."""
        ...

    async def get_manifest(self, name: str) -> BundleManifest | None:
        """The stored record, or ``None`` when it is missing or damaged; it says nothing of
        the bundle's bytes (``read_bundle`` does)."""
        ...

    async def read_bundle(self, name: str, limit: int) -> bytes | None:
        """The bytes tasks are served under ``name``, or ``None`` when there are none.

        Raises ``InvalidBundleError`` when what is there cannot be a bundle (a link, not a
        plain file, unreadable, more than ``limit`` bytes), ``StorageError`` when the store
        cannot be reached.
        """
        ...

    async def put_bundle(self, name: str, data: bytes, manifest: BundleManifest) -> None:
        """Publish atomically: readers see the old bundle or the new one, never a mix."""
        ...

    async def delete(self, name: str) -> None:
        """Remove a bundle and its record (or a note); a missing one is fine."""
        ...

    async def read_note(self, name: str, limit: int) -> bytes | None:
        """A small record that is not a bundle (``controller.presence``), at most ``limit``
        bytes, or ``None`` when there is none; ``StorageError`` when it cannot be read."""
        ...

    async def write_note(self, name: str, data: bytes) -> None:
        """Write a note atomically, readable as the bundles are."""
        ...

    async def list_names(self) -> list[str]:
        """The names of the bundles (or lone records) held, sorted, whoever published them."""
        ...

    async def cleanup(self) -> list[str]:
        """Remove what interrupted writes of ours left behind; returns the removed names."""
        ...
