"""Whether a directory can take the bundles: it exists, and is on the shared filesystem.

The filesystem store never creates its directory. A mistyped path, or a shared filesystem that
is not mounted on this host, must stop the controller before it publishes where no agent looks
and rewrites every opted-in app to point there. The config loader asks at start-up; the store
asks again before each write, as a mount can go away while the daemon runs.

"On a mounted filesystem" is decided by device: the directory's ``st_dev`` differs from that of
``/``. The directory need not be the mount point itself (``/mnt/shared`` mounted, bundles in
``/mnt/shared/pullsecrets``), a bind mount of a directory of the root filesystem still counts
as the root filesystem, and in a container a volume is another device than the image's ``/``.
Walking up with ``os.path.ismount`` to the nearest mount point would answer the same, with
more system calls.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["directory_problem"]

_HINT = "is the shared filesystem mounted on this host?"


def directory_problem(path: Path, *, require_mount: bool) -> str | None:
    """Why ``path`` cannot take the bundles, in words that start with the path; ``None`` if it
    can. With ``require_mount``, it must also be on another filesystem than ``/``."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return f"{path} does not exist: {_HINT}"
    except NotADirectoryError:
        return f"{path} does not exist (a part of it is a file): {_HINT}"
    except OSError as e:
        return f"{path} cannot be reached: {e.strerror or type(e).__name__}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if require_mount and info.st_dev == os.stat("/").st_dev:
        return (f"{path} is on the root filesystem, not on a mounted one (require_mount is "
                f"set): {_HINT}")
    return None
