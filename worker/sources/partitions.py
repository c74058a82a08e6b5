"""The file source's partition cache: one version of each events path on disk, plus what is being read.

Layout of the cache folder (``EVENTS_CACHE_DIR``, by default ``.sessionizer-cache`` beside the
events):

* ``<source>-<version>/``: a finished partition (``<bucket>.ndjson`` files and ``DONE``).
  ``<source>`` digests the resolved events path and the user field, ``<version>`` the files it
  covers: their resolved paths, sizes and modification times
  (``sessionizer.datasource.file_set_version``, which the shared-results fingerprint uses too).
* ``<source>-<version>.lock``: the partition's lock. A reader holds it shared for as long as it
  reads; the writer holds it exclusive while it writes.
* ``<source>-<version>.tmp<pid>/``: a partition being written, renamed into place when complete.

Removal rule (run by every read, after it has locked the partition it needs): a partition, its
lock file and its temporary folders are removed when nobody holds its lock (a non-blocking
exclusive ``flock`` succeeds) and either

1. it is another version of the same events path (the files changed since: it can never be read
   again), or
2. it belongs to another events path and has not been read for ``IDLE_S`` (7 days), or
3. it has the name format used before this rule existed (a bare 24-hex digest).

So after a file changes, the cache holds one partition of it once the readers of the old version
are done; a reader is never pulled from under (POSIX ``flock`` locks are per open file, so this
holds between threads and processes alike). Locks are taken on the lock file's current inode: a
reader that opened a lock file just as it was removed opens it again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

IDLE_S = 7 * 86_400
_LEGACY = re.compile(r"^[0-9a-f]{24}(\.lock|\.tmp\d+)?$")
_ENTRY = re.compile(r"^(?P<key>[0-9a-f]{16}-[0-9a-f]{24})(?P<kind>\.lock|\.tmp\d+)?$")


def source_key(path: Path, user_field: str) -> str:
    """Which events path (and user field) a partition belongs to, whatever its version."""
    return hashlib.sha256(f"{Path(path).resolve()}\0{user_field}".encode()).hexdigest()[:16]


def _same_file(path: Path, fh: IO[bytes]) -> bool:
    """Whether ``path`` still names the file ``fh`` has open (not removed, not replaced)."""
    try:
        return os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
    except FileNotFoundError:
        return False


@contextmanager
def _locked(lock_path: Path, mode: int) -> Iterator[IO[bytes]]:
    """``lock_path`` locked in ``mode`` (``LOCK_SH``/``LOCK_EX``), on the inode the path names."""
    while True:
        fh = open(lock_path, "ab")
        try:
            fcntl.flock(fh, mode)
        except BaseException:
            fh.close()
            raise
        if _same_file(lock_path, fh):
            break
        fh.close()  # removed (pruned) while we waited: lock the new file
    try:
        yield fh
    finally:
        fh.close()


class PartitionCache:
    """Partitions of one events path in ``root``; see the module docstring for the removal rule."""

    def __init__(self, root: Path, source: str) -> None:
        self.root = Path(root)
        self.source = source

    @contextmanager
    def partition(self, version: str, build: Callable[[Path], None]) -> Iterator[Path]:
        """The finished partition ``version``, built by ``build(tmp_folder)`` if missing, held
        (shared lock) until the ``with`` block ends; older partitions are removed on the way."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{self.source}-{version}"
        target, lock = self.root / name, self.root / f"{name}.lock"
        while True:
            with _locked(lock, fcntl.LOCK_SH) as fh:
                if not (target / "DONE").exists():
                    # Converting a flock drops it first, so a pruner may slip in between: after
                    # each conversion, check the lock file is still the one we hold.
                    fcntl.flock(fh, fcntl.LOCK_EX)  # readers of this version wait for the writer
                    if not _same_file(lock, fh):
                        continue
                    if not (target / "DONE").exists():
                        self._write(target, build)
                    fcntl.flock(fh, fcntl.LOCK_SH)
                    if not _same_file(lock, fh):
                        continue
                os.utime(lock)  # "last read", for rule 2
                self.prune(keep=name)
                yield target
                return

    def _write(self, target: Path, build: Callable[[Path], None]) -> None:
        for stale in self.root.glob(f"{target.name}.tmp*"):  # a crashed writer's (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)  # a folder without DONE is incomplete
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            (tmp / "DONE").touch()
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def prune(self, keep: str) -> list[str]:
        """Remove what the rule says may go (never ``keep`` nor anything locked); return the names removed."""
        removed = []
        now = time.time()
        for key in sorted(self._keys()):
            if key == keep:
                continue
            lock = self.root / f"{key}.lock"
            mine = key.startswith(f"{self.source}-")
            legacy = _LEGACY.match(key) is not None
            if not (mine or legacy):
                try:
                    idle = now - lock.stat().st_mtime
                except FileNotFoundError:
                    idle = now - (self.root / key).stat().st_mtime if (self.root / key).exists() else IDLE_S
                if idle < IDLE_S:
                    continue
            if self._remove_unlocked(key, lock):
                removed.append(key)
        return removed

    def _keys(self) -> set[str]:
        keys = set()
        for entry in os.listdir(self.root):
            m = _ENTRY.match(entry)
            if m:
                keys.add(m.group("key"))
            elif _LEGACY.match(entry):
                keys.add(entry[:24])
        return keys

    def _remove_unlocked(self, key: str, lock: Path) -> bool:
        with open(lock, "ab") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # being read or written
            if not _same_file(lock, fh):
                return False  # someone else pruned it (and perhaps a reader recreated it) meanwhile
            shutil.rmtree(self.root / key, ignore_errors=True)
            for tmp in self.root.glob(f"{key}.tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)
            os.unlink(lock)  # last, while locked: a waiting reader then locks a new file
        return True
