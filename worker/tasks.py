"""Celery tasks: thin wrappers that pass ids and plain values; the work is in ``worker.jobs``.

A job fans out into one ``sessionizer.unit`` per user. There is no chord: Celery's guide warns
that chords on Redis are costly and can hang when a header task is lost, and a chord's join
would also make a redelivered unit count twice. Instead each unit records its result in the job
store under its own index (idempotent), and the unit that sees the last result in place
finalises the job through a compare-and-set, so the join is one Redis round-trip per unit.
"""

from __future__ import annotations

from typing import Any

import redis
from celery.signals import task_failure

from sessionizer import tasks as names

from . import jobs, metrics
from .celery_app import app
from .lease import stopping
from .reconcile import send_units

# Redis hiccups (a restart, a failover) are retried with backoff; a source's own transient errors
# are retried inside the source, and anything else fails the job with its reason (worker/jobs.py).
_RETRY = {
    "autoretry_for": (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 20,
}


@app.task(name=names.PLAN, **_RETRY)
def plan(job_id: str) -> int:
    """Split a queued job into units (recorded with the job: the reconciler sends them again from
    there) and send them; returns how many were sent."""
    units = jobs.plan_job(job_id)
    send_units(app, job_id, units)
    return len(units)


@app.task(name=names.UNIT, **_RETRY)
def unit(job_id: str, index: int, users: list[str]) -> str:
    """Sessionize one unit (a user) of a job; returns what became of it."""
    with metrics.unit_run() as outcome:
        result = jobs.run_unit(job_id, index, users)
        outcome(result)
    return result


@task_failure.connect
def _fail_the_job(sender: Any = None, exception: BaseException | None = None, args: Any = None, **_: Any) -> None:
    """A plan or unit that ends in failure fails its job, so none is left ``running``.

    Celery sends this when a task's exception escapes it (its Redis retries ran out, say), in
    the pool process, and when the worker kills a task at the hard time limit, in the worker's
    main process (the task itself never gets to run its own error handling then).
    """
    if getattr(sender, "name", None) in (plan.name, unit.name) and args:
        if stopping.is_set():
            return  # the worker is stopping: its units are handed back, not failed (worker/lease.py)
        jobs.give_up(str(args[0]), exception if exception is not None else RuntimeError("unknown failure"))
