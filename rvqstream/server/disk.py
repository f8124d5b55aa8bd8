"""The free-space water mark of the data directory: publishing stops before the disk is full, so
the log never fails half-way and subscribers keep being served."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rvqstream.server.errors import ServiceError, exhausted

FULL_RETRY_S = 5.0          # what a refused publisher is told to wait
CHECK_EVERY_S = 1.0         # free space is looked up at most this often


class FreeSpace:
    """``check()`` refuses writes while the disk under ``path`` has less than ``min_free`` bytes."""

    def __init__(self, path: Path, min_free: int):
        self.path, self.min_free = path, min_free
        self._free, self._at = None, 0.0

    def free(self) -> int:
        """Free bytes on the disk (looked up at most once a second)."""
        now = time.monotonic()
        if self._free is None or now - self._at > CHECK_EVERY_S:
            self._free, self._at = shutil.disk_usage(self.path).free, now
        return self._free

    def check(self) -> None:
        """RESOURCE_EXHAUSTED (retry later) below the water mark."""
        if self.min_free and self.free() < self.min_free:
            raise full_error("the server's disk is nearly full")


def full_error(why: str) -> ServiceError:
    return exhausted(f"{why}: publishing is paused, try again later", retry_after_s=FULL_RETRY_S)
