"""Inter-process file locks, so that processes (and grid workers) sharing one results folder wait, never clash."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench.errors import BenchError


@contextmanager
def file_lock(path: Path, timeout: float | None = None, what: str = "") -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if missing) for the block; wait for other holders.

    The lock dies with its process (a killed run never leaves a stale lock behind).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if timeout is not None and time.monotonic() - start > timeout:
                    raise BenchError(f"{what or path} is held by another process for more than {timeout:.0f} s")
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
