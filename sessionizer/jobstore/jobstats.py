"""Job counters in Redis: submitted, shared results reused, finished by status, and how long
finished jobs took. The job store records them as jobs move; the API's ``/metrics`` reads them.

Why Redis rather than each process's memory: jobs are submitted by API processes and finished
by workers (or failed at their deadline, or cancelled, by the API), so no one process sees them
all; in Redis every process adds to the same figures, every scrape reads the same, and they
survive restarts (a Prometheus counter may only go up: these never go down).

Key: ``sz:stats:jobs`` (hash, no expiry): ``submitted``, ``shared``, ``finished:<status>``, and a
histogram of durations (submission to finish) per final status: ``duration:<status>:<bucket
index>`` (not cumulative), ``duration:<status>:sum``, ``duration:<status>:count``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import redis
from redis.client import Pipeline

from .keys import JOB_STATS_KEY as KEY
from .replies import text

# seconds: a job can take from well under a second to hours (the deadline is hours)
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
FINAL = ("succeeded", "failed", "cancelled")


def record_submitted(pipe: redis.Redis | Pipeline, *, shared: bool) -> None:
    """Count a job accepted (on a pipeline or client)."""
    pipe.hincrby(KEY, "submitted", 1)
    if shared:
        pipe.hincrby(KEY, "shared", 1)


def record_finished(pipe: redis.Redis | Pipeline, status: str, seconds: float) -> None:
    """Count a job reaching a final status, and how long it took since it was submitted."""
    seconds = max(0.0, seconds)
    pipe.hincrby(KEY, f"finished:{status}", 1)
    pipe.hincrby(KEY, f"duration:{status}:{bisect.bisect_left(DURATION_BUCKETS, seconds)}", 1)
    pipe.hincrbyfloat(KEY, f"duration:{status}:sum", seconds)
    pipe.hincrby(KEY, f"duration:{status}:count", 1)


@dataclass
class JobCounts:
    submitted: int
    shared: int
    finished: dict[str, int]
    # status -> (cumulative counts per bucket upper bound, + the +Inf count), sum
    durations: dict[str, tuple[list[tuple[float, int]], float]]


def read(client: redis.Redis) -> JobCounts:
    raw = {text(k): text(v) for k, v in client.hgetall(KEY).items()}
    finished = {s: int(raw.get(f"finished:{s}", 0)) for s in FINAL}
    durations = {}
    for status in FINAL:
        per = [int(raw.get(f"duration:{status}:{i}", 0)) for i in range(len(DURATION_BUCKETS) + 1)]
        cumulative, total = [], 0
        for bound, n in zip((*DURATION_BUCKETS, float("inf")), per):
            total += n
            cumulative.append((bound, total))
        durations[status] = (cumulative, float(raw.get(f"duration:{status}:sum", 0.0)))
    return JobCounts(int(raw.get("submitted", 0)), int(raw.get("shared", 0)), finished, durations)
