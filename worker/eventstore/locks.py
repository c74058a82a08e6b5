"""``flock`` locks on files that may be removed while someone waits for them.

POSIX ``flock`` locks belong to an open file description, so they hold between threads and
processes alike. A lock file is removed only by whoever holds it exclusively; a waiter that then
gets the lock on the removed inode notices (:func:`same_file`) and locks the new file instead.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def same_file(path: Path, fh: IO[bytes]) -> bool:
    """Whether ``path`` still names the file ``fh`` has open (not removed, not replaced)."""
    try:
        return os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
    except FileNotFoundError:
        return False


@contextmanager
def locked(lock_path: Path, mode: int) -> Iterator[IO[bytes]]:
    """``lock_path`` locked in ``mode`` (``LOCK_SH``/``LOCK_EX``), on the inode the path names."""
    while True:
        fh = open(lock_path, "ab")
        try:
            fcntl.flock(fh, mode)
        except BaseException:
            fh.close()
            raise
        if same_file(lock_path, fh):
            break
        fh.close()  # removed while we waited: lock the new file
    try:
        yield fh
    finally:
        fh.close()


def try_exclusive(lock_path: Path) -> IO[bytes] | None:
    """The lock file open and locked exclusively, or ``None`` if anyone holds it (never waits)."""
    try:
        fh = open(lock_path, "ab")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    if not same_file(lock_path, fh):
        fh.close()
        return None
    return fh
