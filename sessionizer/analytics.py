"""Sessions as analytics tools describe them: a stable id per session (Amplitude's), and the
job's engagement figures (GA4's engaged sessions and bounce rate, durations, sessions per user).

Pure Python (the API imports this package; it stays light): the worker computes each session's
fields in the core (``worker/core/sessions.py``), the job store sums the job's figures here when
the last unit is in (:func:`job_stats`).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson


def session_id(user: str, group: str, start_ms: int) -> str:
    """16 hex characters from the user, the grouping key (the instance with
    ``group_by: ["user", "instance"]``, else empty) and the session's first event (epoch ms).

    The same session gets the same id whatever range or rerun found it: nothing else goes in.
    The parts are encoded as a JSON array, so no user name can pass for another's parts."""
    digest = hashlib.blake2b(orjson.dumps([user, group, int(start_ms)]), digest_size=8)
    return digest.hexdigest()


def quantile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile by linear interpolation between the closest ranks (NumPy's default,
    Hyndman and Fan's type 7); ``None`` for no values."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def job_stats(unit_arrays: Iterable[bytes]) -> dict[str, Any]:
    """The job's session figures from its units' stored session arrays (JSON).

    ``bounce_rate`` is 1 - the engaged share; it and the quantiles are ``None`` without sessions.
    ``sessions_per_user_median`` counts the users with at least one session in the answer."""
    durations: list[float] = []
    per_user: Counter[str] = Counter()
    engaged = 0
    for raw in unit_arrays:
        for row in orjson.loads(raw):
            durations.append(float(row.get("duration_s") or 0.0))
            per_user[row.get("user", "")] += 1
            engaged += bool(row.get("engaged"))
    durations.sort()
    n = len(durations)
    return {
        "engaged_sessions": engaged,
        "bounce_rate": round(1 - engaged / n, 6) if n else None,
        "median_duration_s": quantile(durations, 0.5),
        "p90_duration_s": quantile(durations, 0.9),
        "sessions_per_user_median": quantile(sorted(per_user.values()), 0.5),
    }
