"""The per-key rate limit: a token bucket in Redis (``sessionizer.jobstore.rate_limit``), shared by
every API process."""

from __future__ import annotations

import math

from flask_smorest import abort

from sessionizer.jobstore import JobStore

from .extensions import settings


def check_rate(store: JobStore, owner: str) -> None:
    """429 with ``Retry-After`` once the key has spent its burst faster than its rate."""
    limits = settings().limits
    rate = limits.rate_per_s
    if rate <= 0:
        return
    wait = store.rate_limit.take(owner, rate, limits.rate_burst)
    if wait > 0:
        abort(429, message=f"Too many requests for this API key: at most {rate:g} per second "
              f"(bursts of {limits.rate_burst}).",
              headers={"Retry-After": str(max(1, math.ceil(wait)))})
