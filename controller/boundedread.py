"""Reading a file the config names, which may be the wrong one: bounded, and never a device.

The loader reads the config and the files it names with it, and the credential sources and the
Marathon client read their secrets with it again when they run.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["DOCKER_CONFIG_LIMIT", "SECRET_FILE_LIMIT", "FileTooLargeError", "read_limited"]

SECRET_FILE_LIMIT = 64 << 10
"""Bytes of a password or token file."""
DOCKER_CONFIG_LIMIT = 1 << 20
"""Bytes of a docker ``config.json`` (it may hold many registries)."""


class FileTooLargeError(OSError):
    """A file is bigger than its bound (``strerror`` says the bound)."""


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing more than ``limit`` of them.

    A wrong path (a log, a device, a named pipe) must neither fill memory nor hang: the file is
    opened non-blocking and must be a regular file. Failures are ``OSError`` with a
    ``strerror`` fit for a message (``FileTooLargeError`` past the bound).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        with open(fd, "rb", closefd=False) as file:
            data = file.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileTooLargeError(errno.EFBIG, f"larger than {_size_text(limit)}")
    return data


def _size_text(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
