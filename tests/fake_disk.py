"""A simulated disk for out-of-space tests: file objects whose writes draw on a byte budget and raise ENOSPC when
it runs out (mounting a small tmpfs needs root, which CI may not have)."""
from __future__ import annotations

import errno
import os


class Disk:
    """`free` bytes left (None: unlimited); counts what is written. The write that does not fit writes what fits,
    then raises ENOSPC, as a real full disk does."""

    def __init__(self, free: int | None = None):
        self.free, self.used = free, 0
        self.only: str | None = None         # only files whose names end so draw on it

    def take(self, f, data):
        size = len(data) if isinstance(data, str) else memoryview(data).nbytes
        if self.free is not None and size > self.free:
            if self.free:
                f.write(data[:self.free] if isinstance(data, str) else memoryview(data).cast("B")[:self.free])
            self.free = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.used += size
        if self.free is not None:
            self.free -= size
        return f.write(data)


class OnDisk:
    """A file object whose writes go through `disk`."""

    def __init__(self, f, disk: Disk):
        self._f, self._disk = f, disk

    def write(self, data):
        return self._disk.take(self._f, data)

    def __getattr__(self, name):
        return getattr(self._f, name)
