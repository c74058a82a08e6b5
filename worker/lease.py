"""The lease a worker holds on the unit it runs (``sessionizer/jobstore/leases.py``).

:class:`UnitLease` takes the lease as the unit starts, renews it from a thread every third of
``UNIT_LEASE_S`` while the unit computes (the unit's progress renews it too, in the job store),
and forgets it when the unit ends. The unit's result is stored with the lease's token, so a
worker that lost its lease (cut off from Redis, paused, too slow) writes nothing.

A lease names its owner ``host:pid`` (the pool process). A unit redelivered because its pool
process died (the OOM killer, a crash) finds the lease of that dead process still live: on the
same host the new run sees the process is gone and takes the unit over at once, counting one
lost worker, rather than waiting for the lease to lapse.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from types import TracebackType
from typing import Any

import redis

from sessionizer.jobstore import JobStore, LeaseGrant
from sessionizer.settings import get_settings

log = logging.getLogger(__name__)


def owner_name(pid: int | None = None) -> str:
    """How a lease names the process holding it: ``host:pid``."""
    return f"{socket.gethostname()}:{pid if pid is not None else os.getpid()}"


def dead_on_this_host(owner: str) -> bool:
    """Is ``owner`` a process of this host that no longer exists?"""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class UnitLease:
    """The lease of one unit while this process runs it (a context manager; :meth:`take` inside).
    The process's :class:`Renewer` keeps it alive while it is held."""

    def __init__(self, store: JobStore, job_id: str, unit: int) -> None:
        s = get_settings().workers
        self.store, self.job_id, self.unit = store, job_id, unit
        self.lease_s, self.max_lost = s.unit_lease_s, s.unit_max_attempts
        self.grant = LeaseGrant("none")

    @property
    def token(self) -> str:
        return self.grant.token

    def take(self) -> LeaseGrant:
        """Take the unit's lease and have it renewed (see :class:`LeaseGrant` for the outcomes)."""
        me = owner_name()
        grant = self.store.acquire_unit(self.job_id, self.unit, me, lease_s=self.lease_s, max_lost=self.max_lost)
        if grant.outcome == "held" and (grant.holder == me or dead_on_this_host(grant.holder)):
            # a pool process runs one unit at a time: a lease of its own is from a run that ended
            grant = self.store.acquire_unit(
                self.job_id, self.unit, me, lease_s=self.lease_s, max_lost=self.max_lost, dead_token=grant.holder_token
            )
        self.grant = grant
        if grant.outcome == "ok":
            Renewer.ensure(self.store, self.lease_s)
        return grant

    def __enter__(self) -> UnitLease:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.grant.outcome == "ok" and (self.job_id, self.unit) in self.store.held:
            # the unit ended without storing its result (a Redis error the task retries, a failed
            # job): hand it back, so that its next run takes it at once rather than after the lease
            try:
                self.store.release_unit(self.job_id, self.unit, token=self.grant.token)
            except redis.RedisError:
                pass  # the lease lapses by itself
        self.store.forget_lease(self.job_id, self.unit)


class Renewer(threading.Thread):
    """One thread per process renewing every lease the process holds (``store.held``), every
    third of the lease: no thread to start per unit. A lease found taken over is dropped (the
    unit's result will be refused) and logged."""

    _running: Renewer | None = None
    _guard = threading.Lock()

    def __init__(self, store: JobStore, lease_s: float) -> None:
        super().__init__(name="lease-renewer", daemon=True)
        self.store, self.lease_s = store, lease_s

    @classmethod
    def ensure(cls, store: JobStore, lease_s: float) -> None:
        with cls._guard:
            if cls._running is None or not cls._running.is_alive() or cls._running.store is not store:
                cls._running = cls(store, lease_s)
                cls._running.start()

    def run(self) -> None:
        while True:
            time.sleep(self.lease_s / 3)
            for (job_id, unit), (token, _) in list(self.store.held.items()):
                try:
                    if self.store.renew_unit(job_id, unit, token, self.lease_s) == "lost":
                        log.warning(
                            "job %s unit %s: lease lost to another worker; its result will be refused", job_id, unit
                        )
                        self.store.held.pop((job_id, unit), None)
                except redis.RedisError as exc:  # Redis away: try again at the next tick
                    log.warning("job %s unit %s: lease not renewed (%s)", job_id, unit, type(exc).__name__)


# --- a quick, clean stop: SIGTERM hands the running units back ----------------------------------
stopping = threading.Event()  # set in the worker's main process once it is stopping


def quick_stop_on_sigterm(sender: Any = None, **_: Any) -> None:
    """``worker_ready`` receiver: make SIGTERM a quick stop that hands the running units back.

    Celery's SIGTERM waits for the running units to finish (its warm shutdown): a busy worker
    then takes as long as its longest unit, and is killed at its grace period with nothing
    recorded. Instead the units' leases are released at once (a clean stop does not count as a
    lost worker), then Celery's cold shutdown stops the pool processes; the units were not
    acknowledged, so kombu puts them back in the queue as the connection closes, and another
    worker takes them at once. A second SIGTERM does not start the stop again.
    """
    from celery.apps import worker as celery_worker
    from celery.apps.worker import during_soft_shutdown, install_worker_term_hard_handler, on_cold_shutdown

    worker = sender.controller

    def hand_back(worker: Any) -> None:
        install_worker_term_hard_handler(worker, sig="SIGTERM", callback=during_soft_shutdown)
        stopping.set()
        released, unreachable = hand_back_units()
        if released:
            log.info("stopping: handed back %d running unit(s)", released)
        # A unit whose lease could not be released (Redis away) cannot learn that it should stop,
        # nor store its result: waiting for it would hold the stop until the grace period kills
        # the whole worker. Its pool process goes now; its lease lapses and the reconciler hands
        # the unit out again, as for a lost worker.
        for pid in unreachable:
            log.warning("stopping: Redis unreachable, unit in process %d stopped, left to its lease", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Celery's cold stop, without its console notice ("Hitting Ctrl+C again will terminate
        # all running tasks!"): untrue here (they are handed back), and not a log line (a JSON
        # log must stay one object a line)
        say, celery_worker.safe_say = celery_worker.safe_say, lambda *args, **kwargs: None
        try:
            on_cold_shutdown(worker)
        finally:
            celery_worker.safe_say = say

    install_worker_term_hard_handler(worker, sig="SIGTERM", callback=hand_back)


def hand_back_units() -> tuple[int, list[int]]:
    """Release the leases of the units this worker's pool runs (by their processes): how many,
    and the pool processes whose unit could not be released (Redis away)."""
    from celery.worker import state

    from sessionizer import tasks as names
    from sessionizer.jobstore.liveness import fail_fast_client

    s = get_settings()
    store = JobStore(fail_fast_client(s.redis.url), s.jobs.ttl_s)
    released = 0
    unreachable: list[int] = []
    for request in tuple(state.active_requests):
        if request.name != names.UNIT or not request.worker_pid or len(request.args) < 2:
            continue
        try:
            released += store.release_unit(
                str(request.args[0]), int(request.args[1]), owner=owner_name(request.worker_pid)
            )
        except redis.RedisError:  # Redis away: the lease lapses by itself, the reconciler hands the unit out
            unreachable.append(int(request.worker_pid))
    return released, unreachable
