"""RFC 7240 ``Prefer: wait=N``: hold an answer until the job has finished or N seconds have passed.

N is capped at ``MAX_WAIT_S``; a key holds at most ``MAX_WAITS_PER_KEY`` waits at once (counted in
Redis, across every API process), and a wait beyond that is answered at once without
``Preference-Applied`` (RFC 7240 lets a server decline a preference).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sessionizer.jobstore import JobRecord, JobStore
from sessionizer.settings import LimitsSettings

from ..clientgone import client_gone

_WAIT = re.compile(r"^\s*wait\s*=\s*\"?(\d{1,6})\"?\s*$", re.IGNORECASE)


def prefer_wait(header: str | None, max_wait_s: float) -> int | None:
    """Seconds asked by ``Prefer: wait=N``, capped at ``max_wait_s``; ``None`` when not asked.

    Preferences this API does not know (``respond-async``, ``return=...``) are ignored, as
    RFC 7240 says.
    """
    if not header:
        return None
    for pref in header.split(","):
        for part in pref.split(";")[:1]:
            m = _WAIT.match(part)
            if m:
                return int(min(int(m.group(1)), max_wait_s))
    return None


@contextmanager
def wait_slot(store: JobStore, owner: str, seconds: float, cap: int) -> Iterator[bool]:
    """Hold one of the key's ``cap`` wait slots for the block; ``False`` when the key already
    holds them all. A slot lapses by itself if its process dies mid-wait."""
    token = uuid.uuid4().hex
    granted = store.wait_slots.take(owner, token, seconds, cap)
    try:
        yield granted
    finally:
        if granted:
            store.wait_slots.release(owner, token)


def wait_until_finished(
    store: JobStore, job: JobRecord, seconds: float, gone: Callable[[], bool] = lambda: False
) -> JobRecord:
    """Poll the store until the job leaves queued/running, ``seconds`` pass, or the client is
    ``gone`` (a bounded wait: under gevent the sleeps and Redis reads yield, so a waiting request
    holds no thread; a client that gave up frees its slot at once)."""
    deadline = time.monotonic() + seconds
    delay = 0.02
    while job.active:
        left = deadline - time.monotonic()
        if left <= 0 or gone():
            break
        time.sleep(min(delay, left))
        delay = min(delay * 1.5, 0.25)
        latest = store.view(job.id)
        if latest is None:  # deleted meanwhile: show what we last saw
            break
        job = latest
    return job


def waited(
    store: JobStore, owner: str, job: JobRecord, prefer: str | None, limits: LimitsSettings
) -> tuple[JobRecord, dict[str, str]]:
    """The job after honouring ``Prefer: wait=N``, and the ``Preference-Applied`` header if it was."""
    seconds = prefer_wait(prefer, limits.max_wait_s)
    if seconds is None:
        return job, {}
    with wait_slot(store, owner, seconds, limits.max_waits_per_key) as granted:
        if not granted:
            return job, {}
        job = wait_until_finished(store, job, seconds, gone=client_gone)
        return job, {"Preference-Applied": f"wait={seconds}"}
