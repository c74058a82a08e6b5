"""The event store of the Elasticsearch source: each user's settled UTC days, kept once read.

A job on Elasticsearch used to scan its whole range every time. Now every *settled* day a unit
reads (one whose end lies ``SHARE_SETTLE_S`` in the past: events may arrive late until then) is
kept per user, and a later job over any range reads from Elasticsearch only the days it lacks or
that are not settled, plus the read margin its sessions need. Sessions are still computed from
the events, so a result is the same as a cold full scan's.

Layout, under ``<EVENT_STORE_DIR>/es/<identity>/<user>/``, where ``<identity>`` digests the data
as the shared-results fingerprint defines it (``sessionizer.datasource.source_identity``: the
cluster's URL, the index, the field names) and ``<user>`` the user name:

* ``YYYY-MM-DD.seg``: one day's events (``segment.py``), with its manifest in the segment's
  meta: ``count`` (the documents Elasticsearch holds for that user and day, refused ones
  included), ``first`` and ``last`` timestamp, ``read_at``, and the timestamps of the refused
  documents. A settled day without documents is kept too (``count`` 0). Reading touches the
  file: its modification time is its last use, for ``EVENT_STORE_MAX_BYTES`` (``budget.py``).
* ``../locks/NN.lock``: the lock of the users whose folder name falls in stripe ``NN`` (of
  ``LOCK_STRIPES``), held exclusively by a unit for as long as it checks, reads and writes those
  users' days; so two jobs that need the same missing day build it once (the second waits, then
  finds it), and eviction never removes a day under its reader. Stripes, not a lock per user, so
  that a unit of a thousand users holds at most ``LOCK_STRIPES`` open files.

Trust, but verify: before it uses stored days, a unit sends one request (``day_counts``: a
``size: 0`` search with a composite aggregation by user and UTC day over the unit's users and
whole days), and a stored day whose count differs from Elasticsearch's (documents indexed late,
or deleted) is read again.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .locks import locked
from .segment import CorruptSegment, Segment, UserColumns, write_segment

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
LOCK_STRIPES = 64


def stripe_lock(identity_root: Path, user_folder: str) -> Path:
    """The lock file guarding the user whose folder is ``user_folder`` (a hex digest)."""
    return identity_root / "locks" / f"{int(user_folder[:8], 16) % LOCK_STRIPES:02d}.lock"


def day_of(t_ms: int) -> int:
    """Start (epoch ms) of the UTC day holding ``t_ms``."""
    return t_ms - t_ms % DAY_MS


def day_name(day_ms: int) -> str:
    return datetime.fromtimestamp(day_ms / 1000, UTC).strftime("%Y-%m-%d")


class StoredDay:
    """One user's stored day: its manifest and events (in the day file's vocabulary)."""

    def __init__(self, meta: dict[str, Any], cols: UserColumns, screens: list[str], instances: list[str]) -> None:
        self.meta, self.cols, self.screens, self.instances = meta, cols, screens, instances

    @property
    def count(self) -> int:
        return int(self.meta["count"])

    @property
    def refused_t(self) -> list[int | None]:
        return list(self.meta.get("refused_t", []))


class DayStore:
    """Settled days of one data identity, per user, in ``root`` (``<EVENT_STORE_DIR>/es/<identity>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _user_dir(self, user: str) -> Path:
        return self.root / hashlib.sha256(user.encode()).hexdigest()[:32]

    @contextmanager
    def holding(self, users: list[str]) -> Iterator[None]:
        """Every user's lock, exclusively, taken in one order (no two units deadlock)."""
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            for lock in sorted({stripe_lock(self.root, self._user_dir(u).name) for u in set(users)}):
                stack.enter_context(locked(lock, fcntl.LOCK_EX))
            yield

    def load(self, user: str, day_ms: int) -> StoredDay | None:
        """The stored day (the caller holds the user), or ``None``; a corrupt one is removed."""
        path = self._user_dir(user) / f"{day_name(day_ms)}.seg"
        try:
            with Segment(path) as seg:
                cols = seg.read(user) or UserColumns(
                    np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int32)
                )
                meta, screens, instances = seg.meta, seg.screens, seg.instances
            if int(meta.get("day", -1)) != day_ms or "count" not in meta:
                raise CorruptSegment(f"{path.name}: manifest of another day")
        except FileNotFoundError:
            return None
        except CorruptSegment as exc:
            log.warning("event store: %s; discarded, read again from Elasticsearch", exc)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # its last use
        return StoredDay(meta, cols, screens, instances)

    def save(
        self,
        user: str,
        day_ms: int,
        cols: UserColumns,
        screens: list[str],
        instances: list[str],
        count: int,
        refused_t: Sequence[int | None],
    ) -> bool:
        """Keep one settled day (the caller holds the user); False when the disk refused it."""
        folder = self._user_dir(user)
        meta = {
            "day": day_ms,
            "count": count,
            "first": int(cols.t[0]) if cols.t.shape[0] else None,
            "last": int(cols.t[-1]) if cols.t.shape[0] else None,
            "read_at": datetime.now(UTC).isoformat(),
            "refused_t": list(refused_t),
        }
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_segment(folder / f"{day_name(day_ms)}.seg", [(user, cols)], screens, instances, meta)
        except OSError as exc:
            log.warning(
                "event store: could not keep %s of a user (%s); this job goes on from Elasticsearch",
                day_name(day_ms),
                exc,
            )
            return False
        return True

    def counts(self, users: list[str], days: list[int]) -> dict[str, int] | None:
        """Each user's stored event count over ``days``, or ``None`` when a day is missing."""
        out = dict.fromkeys(users, 0)
        for user in users:
            folder = self._user_dir(user)
            for day in days:
                try:
                    with Segment(folder / f"{day_name(day)}.seg") as seg:
                        out[user] += seg.count(user)
                except (FileNotFoundError, CorruptSegment):
                    return None
        return out
