"""``EVENT_STORE_MAX_BYTES``: the store's size bound, kept by evicting what was used least recently.

Every store file is accounted: the file store's segments (their last use is their lock file's
modification time, touched by every read) and the Elasticsearch store's days (their own
modification time, touched by every read). While the store is over its bound, the least recently
used go first; one that a reader holds (its lock cannot be taken without waiting) is skipped,
never removed under its reader.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .days import stripe_lock
from .locks import try_exclusive

log = logging.getLogger(__name__)


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def store_bytes(root: Path) -> int:
    """What the store's files take on disk (their sizes)."""
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


# Units call :func:`enforce_soon` after writing; walking a store of many thousand day files after
# every unit would cost more than the unit (seen: 64 units x 11,400 files, seconds of CPU), so a
# process walks a store at most once every ENFORCE_EVERY_S. The bound can thus be overshot by what
# one process writes in that time.
ENFORCE_EVERY_S = 10.0
_last_walk: dict[Path, float] = {}


def enforce_soon(root: Path, max_bytes: int) -> list[Path]:
    """:func:`enforce`, unless this process walked ``root`` less than ``ENFORCE_EVERY_S`` ago."""
    now = time.monotonic()
    key = Path(root)
    if now - _last_walk.get(key, -ENFORCE_EVERY_S) < ENFORCE_EVERY_S:
        return []
    _last_walk[key] = now
    return enforce(key, max_bytes)


def enforce(root: Path, max_bytes: int) -> list[Path]:
    """Evict least recently used store files until the store holds at most ``max_bytes``;
    return what was removed."""
    entries: list[tuple[float, int, Path, Path, bool]] = []  # last use, size, file, lock, remove lock too
    total = 0
    for dirpath, _, names in os.walk(root):
        here = Path(dirpath)
        for name in names:
            path = here / name
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                continue
            total += size
            if not name.endswith(".seg"):
                continue
            if here.parent.parent.name == "es":  # es/<identity>/<user>/<day>.seg, locked by stripe
                lock = stripe_lock(here.parent, here.name)
                entries.append((_mtime(path) or 0.0, size, path, lock, False))
            else:  # files/<name>.seg, locked per segment
                lock = path.with_suffix(".lock")
                entries.append((_mtime(lock) or _mtime(path) or 0.0, size, path, lock, True))
    removed: list[Path] = []
    if total <= max_bytes:
        return removed
    for _, size, path, lock, with_lock in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        fh = try_exclusive(lock)
        if fh is None:
            continue  # being read (or written): kept
        try:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            total -= size
            removed.append(path)
            if with_lock:
                os.unlink(lock)  # while locked: a waiting reader then locks a new file
        finally:
            fh.close()
    if removed:
        log.info(
            "event store over EVENT_STORE_MAX_BYTES (%d): evicted %d least recently used file(s)",
            max_bytes,
            len(removed),
        )
    return removed
