"""Elasticsearch through the event store: settled days read once, verified, reused.

:class:`StoredElasticsearchSource` answers :meth:`read_events` like the plain source, exactly:
the events of the users in ``[lo_ms, hi_ms]``. What it asks Elasticsearch for:

1. the unit's users' stored settled days (``worker/eventstore/days.py``) are checked with one
   ``day_counts`` request (a composite aggregation by user and UTC day), sent only when some
   day is stored; a day whose count differs from the cluster's is read again;
2. every other day is read with the plain source (point in time + ``search_after``), grouped so
   that users missing the same days share one read per run of consecutive days. Settled days are
   read whole, so they can be kept (so a job's first and last day may bring a few documents
   beyond its read margin); days not yet settled are read only as far as the range needs and
   never kept.

The result's ``scanned`` counts the users' documents in the range (from either side), and
``from_source`` the documents Elasticsearch sent for this read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from ..eventstore import budget
from ..eventstore.days import DAY_MS, DayStore, StoredDay, day_of
from ..eventstore.segment import UserColumns
from .accumulator import EventAccumulator
from .base import ReadOptions

log = logging.getLogger(__name__)


def _runs(days: list[int]) -> list[tuple[int, int]]:
    """Consecutive days as ``(first, last)`` pairs."""
    runs: list[tuple[int, int]] = []
    for d in days:
        if runs and runs[-1][1] + DAY_MS == d:
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


class StoredElasticsearchSource:
    """An :class:`~worker.sources.elasticsearch.ElasticsearchSource` with settled days kept in ``store_dir``."""

    def __init__(
        self,
        inner: Any,
        store_dir: Path,
        identity: str,
        *,
        settle_s: float,
        max_bytes: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.names = inner.names
        self.store_dir = Path(store_dir)
        self.days = DayStore(self.store_dir / "es" / identity[:32])
        self.settle_ms = int(settle_s * 1000)
        self.max_bytes = max_bytes
        self._clock = clock

    def __repr__(self) -> str:
        return f"StoredElasticsearchSource({self.inner!r}, store={str(self.days.root)!r})"

    def _settled(self, day: int) -> bool:
        return day + DAY_MS + self.settle_ms <= int(self._clock() * 1000)

    def counts(self, users: list[str], lo_ms: int, hi_ms: int) -> dict[str, int] | None:
        """Each user's stored event count over the range's settled days (an estimate of the work:
        the unsettled tail is not counted), or ``None`` if a settled day is missing."""
        days = [d for d in range(day_of(lo_ms), day_of(hi_ms) + DAY_MS, DAY_MS) if self._settled(d)]
        return self.days.counts(users, days) if days else None

    def read_events(self, users: list[str], lo_ms: int, hi_ms: int, **options: Unpack[ReadOptions]) -> EventAccumulator:
        # since_ms: a unit's users are its own, so what this read sent is all this job read for them
        should_stop, on_progress = options.get("should_stop"), options.get("on_progress")
        wanted = sorted(set(users))
        acc = EventAccumulator(self.names, users=wanted, lo_ms=lo_ms, hi_ms=hi_ms)
        if not wanted or lo_ms > hi_ms:
            return acc
        days = list(range(day_of(lo_ms), day_of(hi_ms) + DAY_MS, DAY_MS))
        settled = [d for d in days if self._settled(d)]  # a prefix of `days`
        wrote = False
        with self.days.holding(wanted):
            stored: dict[tuple[str, int], StoredDay] = {}
            for user in wanted:
                for day in settled:
                    found = self.days.load(user, day)
                    if found is not None:
                        stored[(user, day)] = found
            if stored:
                held = self.inner.day_counts(wanted, settled[0], settled[-1] + DAY_MS - 1)
                stale = [key for key, found in stored.items() if found.count != held.get(key, 0)]
                for key in stale:
                    del stored[key]
                if stale:
                    log.info(
                        "event store: %d stored day(s) changed in Elasticsearch since read; reading them again",
                        len(stale),
                    )
            groups: dict[tuple[int, ...], list[str]] = {}
            for user in wanted:
                missing = tuple(d for d in days if (user, d) not in stored)
                if missing:
                    groups.setdefault(missing, []).append(user)
            base = sum(found.cols.t.shape[0] for found in stored.values())
            sent = kept = 0
            for missing, group in groups.items():
                for first, last in _runs(list(missing)):
                    r_lo = first if self._settled(first) else max(first, lo_ms)
                    r_hi = last + DAY_MS - 1 if self._settled(last) else hi_ms

                    def progress(n: int, done: int = base + sent) -> None:
                        if on_progress is not None:
                            on_progress(done + n)

                    fresh = self.inner.read_events(group, r_lo, r_hi, should_stop=should_stop, on_progress=progress)
                    sent += fresh.scanned
                    screens, instances = fresh.vocabulary()
                    for user in group:
                        ev = fresh.pop_user(user)
                        refused = fresh.rejected.pop(user, [])
                        wrote |= self._keep(
                            user, first, last, ev.t_ms, ev.screen, ev.instance, screens, instances, refused
                        )
                        kept += acc.add_columns(user, ev.t_ms, ev.screen, ev.instance, screens, instances)
                        self._count_refused(acc, [t for t, _ in refused], [r for _, r in refused])
            for (user, _), found in sorted(stored.items()):
                c = found.cols
                kept += acc.add_columns(user, c.t, c.screen, c.instance, found.screens, found.instances)
                self._count_refused(acc, found.refused_t, c.samples)
        acc.scanned = kept + acc.invalid
        acc.from_source = sent
        if wrote and self.max_bytes:
            budget.enforce_soon(self.store_dir, self.max_bytes)
        return acc

    def _keep(
        self,
        user: str,
        first: int,
        last: int,
        t: np.ndarray,
        screen: np.ndarray,
        instance: np.ndarray,
        screens: list[str],
        instances: list[str],
        refused: list[tuple[int | None, Any]],
    ) -> bool:
        """Store the settled days of ``first..last`` out of one user's fresh read. A user without
        a single document in them (a name that has no events) gets no day files: one empty read
        for all such users of a unit costs less than thousands of empty files."""
        wrote = False
        if t.shape[0] == 0 and not refused:
            return wrote
        for day in range(first, last + DAY_MS, DAY_MS):
            if not self._settled(day):
                break
            a, b = np.searchsorted(t, [day, day + DAY_MS], side="left")
            in_day = [ts for ts, _ in refused if ts is not None and day <= ts < day + DAY_MS]
            cols = UserColumns(
                t[a:b],
                screen[a:b],
                instance[a:b],
                len(in_day),
                [r for ts, r in refused if ts is not None and day <= ts < day + DAY_MS][:5],
            )
            wrote |= self.days.save(user, day, cols, screens, instances, int(b - a) + len(in_day), in_day)
        return wrote

    @staticmethod
    def _count_refused(acc: EventAccumulator, refused_t: list[int | None], samples: list[Any]) -> None:
        """Count a user's refused documents that lie in the range (or whose time is unknown)."""
        inside = [t for t in refused_t if t is None or acc.lo_ms <= t <= acc.hi_ms]
        acc.invalid += len(inside)
        room = acc.MAX_ERROR_SAMPLES - len(acc.error_samples)
        if inside and room > 0:
            acc.error_samples.extend(samples[:room])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
