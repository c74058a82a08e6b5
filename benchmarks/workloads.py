"""Seeded synthetic usage timelines with planted ground-truth sessions.

Each family describes one user's timeline; :func:`generate` returns a
:class:`Timeline` (sorted epoch-ms timestamps, screen/instance codes, planted
session of every event). :func:`documents` turns timelines into the event
documents of the file and Elasticsearch sources
(``{"@timestamp", "util", "ecran", "instance"}``), :func:`write_ndjson` and
:func:`write_parquet` write them for the file source.

Families (gaps inside a session vs between sessions):

``exp``        exponential gaps (mean 20 s) inside sessions of 10-200 events;
               sessions 1-6 per day at random times, any day.
``heavy``      log-normal gaps inside sessions (median 15 s, sigma 1.3: about 1 in
               400 gaps exceeds 10 min), same layout.
``rhythm``     working hours (08:00-18:00 weekdays, lunch break), rare weekend use;
               sessions 25-45 min apart on busy days.
``instances``  like ``exp``, each session on one of 4 instances, occasional
               event on another instance inside a session.
``bursts``     duplicate timestamps and bursts (several events in the same ms or
               within 200 ms) inside sessions.
``bot``        an automated account emitting every 60 s (+-3 s) in runs of 1-6 h,
               runs separated by 2-10 h; each run is one planted session.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

__all__ = ["FAMILIES", "Timeline", "generate", "documents", "write_ndjson", "write_parquet"]

FAMILIES = ("exp", "heavy", "rhythm", "instances", "bursts", "bot")
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z, a Monday
SCREENS = ("connexion", "accueil", "recherche", "fiche", "edition", "validation", "export", "aide")


@dataclass(frozen=True)
class Timeline:
    """One user's events, sorted by time.

    Attributes
    ----------
    user : str
    t_ms : ndarray of int64, shape (n,)
    screen, instance : ndarray of int32, shape (n,)
        Codes into :data:`SCREENS` / ``instance_names``.
    truth : ndarray of int64, shape (n,)
        Planted session of each event, numbered by first event.
    instance_names : tuple of str
    """

    user: str
    t_ms: np.ndarray
    screen: np.ndarray
    instance: np.ndarray
    truth: np.ndarray
    instance_names: tuple


def _session_starts(rng, family, weeks, start_ms):
    """Start times (ms) of planted sessions, at least 45 min apart after the previous end."""
    starts = []
    for day in range(weeks * 7):
        base = start_ms + day * DAY_MS
        weekday = day % 7 < 5
        if family == "rhythm":
            if not weekday and rng.random() > 0.15:
                continue
            count = rng.integers(3, 8) if weekday else 1
            hours = np.sort(rng.uniform(8.0, 17.5, count))
            hours = hours[(hours < 12.0) | (hours > 13.5)]  # lunch break
        else:
            count = rng.integers(0, 7)
            hours = np.sort(rng.uniform(0.0, 24.0, count))
        starts.extend((base + hours * 3_600_000).astype(np.int64).tolist())
    return starts


def _human(rng, family, weeks, start_ms):
    times, sess, inst = [], [], []
    free_from = start_ms
    sid = 0
    for s in _session_starts(rng, family, weeks, start_ms):
        s = max(s, free_from)
        n = int(rng.integers(10, 201))
        if family == "heavy":
            gaps = rng.lognormal(np.log(15_000.0), 1.3, n - 1)
        elif family == "rhythm":
            gaps = rng.exponential(25_000.0, n - 1)
        else:
            gaps = rng.exponential(20_000.0, n - 1)
        if family == "bursts":
            burst = rng.random(n - 1) < 0.3
            gaps = np.where(burst, rng.integers(0, 200, n - 1), gaps)
        t = s + np.concatenate(([0.0], np.cumsum(gaps))).astype(np.int64)
        times.append(t)
        sess.append(np.full(n, sid))
        main = sid % 4 if family == "instances" else 0
        codes = np.full(n, main, dtype=np.int32)
        if family == "instances":
            stray = rng.random(n) < 0.05
            codes[stray] = rng.integers(0, 4, int(stray.sum()))
        inst.append(codes)
        sid += 1
        # Planted sessions are separated by at least 45 min of idle time.
        free_from = int(t[-1]) + int(45 * 60_000 + rng.exponential(3_600_000.0))
    return times, sess, inst


def _bot(rng, weeks, start_ms):
    times, sess, inst = [], [], []
    now = start_ms + int(rng.uniform(0, 6) * 3_600_000)
    end = start_ms + weeks * WEEK_MS
    sid = 0
    while now < end:
        duration = rng.uniform(1.0, 6.0) * 3_600_000
        n = max(2, int(duration // 60_000))
        t = now + np.arange(n, dtype=np.int64) * 60_000 + rng.integers(-3_000, 3_001, n)
        t = np.sort(t)
        times.append(t)
        sess.append(np.full(n, sid))
        inst.append(np.zeros(n, dtype=np.int32))
        sid += 1
        now = int(t[-1]) + int(rng.uniform(2.0, 10.0) * 3_600_000)
    return times, sess, inst


def generate(
    family: str, *, weeks: int = 15, seed: int = 0, start_ms: int = EPOCH_MS, user: str | None = None
) -> Timeline:
    """One user's timeline of ``weeks`` weeks from ``start_ms`` for ``family``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    if family == "bot":
        times, sess, inst = _bot(rng, weeks, start_ms)
    else:
        times, sess, inst = _human(rng, family, weeks, start_ms)
    t = np.concatenate(times).astype(np.int64)
    truth = np.concatenate(sess).astype(np.int64)
    instance = np.concatenate(inst).astype(np.int32)
    order = np.argsort(t, kind="stable")
    t, truth, instance = t[order], truth[order], instance[order]
    screen = rng.integers(0, len(SCREENS), t.shape[0]).astype(np.int32)
    names = tuple(f"instance{i}" for i in range(4))
    return Timeline(user or f"{family}-user", t, screen, instance, truth, names)


def documents(timelines: Iterable[Timeline], *, iso: bool = True) -> Iterator[dict]:
    """Event documents of the timelines, in time order per user.

    ``@timestamp`` is an ISO-8601 UTC string with milliseconds (``iso=True``) or
    epoch milliseconds. Suitable for an Elasticsearch bulk helper's ``_source``.
    """
    for tl in timelines:
        for t, s, i in zip(tl.t_ms.tolist(), tl.screen.tolist(), tl.instance.tolist()):
            stamp = (
                datetime.fromtimestamp(t / 1000.0, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                if iso
                else t
            )
            yield {"@timestamp": stamp, "util": tl.user, "ecran": SCREENS[s], "instance": tl.instance_names[i]}


def write_ndjson(path: str | Path, timelines: Iterable[Timeline], *, iso: bool = True) -> int:
    """Write one JSON document per line; returns the number of documents."""
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for doc in documents(timelines, iso=iso):
            out.write(json.dumps(doc) + "\n")
            count += 1
    return count


def write_parquet(path: str | Path, timelines: Iterable[Timeline]) -> int:
    """Write the documents as Parquet (``@timestamp`` as UTC millisecond timestamps)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tls = list(timelines)
    t = np.concatenate([tl.t_ms for tl in tls]) if tls else np.zeros(0, np.int64)
    table = pa.table(
        {
            "@timestamp": pa.array(t, type=pa.timestamp("ms", tz="UTC")),
            "util": pa.array([tl.user for tl in tls for _ in range(tl.t_ms.shape[0])], type=pa.string()),
            "ecran": pa.array([SCREENS[s] for tl in tls for s in tl.screen.tolist()], type=pa.string()),
            "instance": pa.array([tl.instance_names[i] for tl in tls for i in tl.instance.tolist()], type=pa.string()),
        }
    )
    pq.write_table(table, path)
    return table.num_rows


def main() -> None:
    """``python -m benchmarks.workloads OUT_DIR``: write every family as NDJSON and Parquet."""
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/data")
    out.mkdir(parents=True, exist_ok=True)
    tls = [generate(f) for f in FAMILIES]
    print(f"{write_ndjson(out / 'events.ndjson', tls)} documents -> {out / 'events.ndjson'}")
    print(f"{write_parquet(out / 'events.parquet', tls)} rows -> {out / 'events.parquet'}")


if __name__ == "__main__":
    main()
