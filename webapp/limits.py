"""Per-key guards and waits: the rate limit (a token bucket in Redis, shared by every API
process), RFC 7240 ``Prefer: wait=N``, and the bounded wait it asks for."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask_smorest import abort

from sessionizer.jobstore import JobStore
from sessionizer.status import ACTIVE

from .extensions import settings

_WAIT = re.compile(r"^\s*wait\s*=\s*\"?(\d{1,6})\"?\s*$", re.IGNORECASE)


def check_rate(store: JobStore, owner: str) -> None:
    """429 with ``Retry-After`` once the key has spent its burst faster than its rate."""
    limits = settings().limits
    rate = limits.rate_per_s
    if rate <= 0:
        return
    wait = store.take_token(owner, rate, limits.rate_burst)
    if wait > 0:
        abort(429, message=f"Too many requests for this API key: at most {rate:g} per second "
              f"(bursts of {limits.rate_burst}).",
              headers={"Retry-After": str(max(1, math.ceil(wait)))})


def prefer_wait(header: str | None) -> int | None:
    """Seconds asked by ``Prefer: wait=N``, capped at ``MAX_WAIT_S``; ``None`` when not asked.

    Preferences this API does not know (``respond-async``, ``return=...``) are ignored, as
    RFC 7240 says.
    """
    if not header:
        return None
    for pref in header.split(","):
        for part in pref.split(";")[:1]:
            m = _WAIT.match(part)
            if m:
                return int(min(int(m.group(1)), settings().limits.max_wait_s))
    return None


@contextmanager
def wait_slot(store: JobStore, owner: str, seconds: float) -> Iterator[bool]:
    """Hold one of the key's ``MAX_WAITS_PER_KEY`` wait slots for the block; ``False`` when the
    key already holds them all. Counted in Redis, so the bound holds across every API process; a
    slot lapses by itself if its process dies mid-wait."""
    token = uuid.uuid4().hex
    granted = store.take_wait_slot(owner, token, seconds, settings().limits.max_waits_per_key)
    try:
        yield granted
    finally:
        if granted:
            store.release_wait_slot(owner, token)


def wait_until_finished(store: JobStore, job: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Poll the store until the job leaves queued/running or ``seconds`` pass (a bounded wait:
    under gevent the sleeps and Redis reads yield, so a waiting request holds no thread)."""
    deadline = time.monotonic() + seconds
    delay = 0.02
    while job["status"] in ACTIVE:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(delay, left))
        delay = min(delay * 1.5, 0.25)
        latest = store.view(job["id"])
        if latest is None:  # deleted meanwhile: show what we last saw
            break
        job = latest
    return job
