"""The reconciler: every unit runs, whatever dies.

A unit can be lost in ways the broker does not see: a worker's main process killed (its units
wait in kombu's ``unacked`` hash until the visibility timeout, two hours), or a message that the
Redis transport had popped (``BRPOP``) but not yet recorded in ``unacked`` when its worker died
(celery#7950, celery#4354: it is then nowhere). Every ``RECONCILE_INTERVAL_S``, one worker (the
holder of a Redis lock with a ttl; another takes over within the ttl when it dies) looks at each
computation in ``sz:live`` and hands out again every unit that is

* neither done nor held by a live lease (``sessionizer/jobstore/leases.py``), and
* not waiting in the queue, nor just reserved by a worker (in ``unacked`` for less than a lease),

at once when its lease lapsed (its holder died, hung or was cut off), and otherwise once two
passes in a row found it so (a message moving between the list and ``unacked`` is seen in
neither for an instant). A queued computation whose plan is nowhere is planned again the same
way. Units waiting in a long queue are in the list, so a queue of thousands is never flooded
with copies; a copy that does run finds the unit done or leased and stops (a duplicate never
changes a result: the store keeps one result per unit, written only by its lease's holder).

Why a lock among the workers rather than Celery beat: it needs no other process in any stack
(``make up``, docker-compose, workers added on other hosts), and no single process whose death
would stop reconciling: the lock's ttl moves the duty to another worker.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis
from celery import Celery, bootsteps

from sessionizer import tasks as names
from sessionizer.jobstore import JobStore
from sessionizer.jobstore.keys import RECONCILE_STATS_KEY, RECONCILER_KEY, is_job_id
from sessionizer.settings import get_settings
from sessionizer.status import JobStatus

log = logging.getLogger(__name__)

Key = tuple[str, int | None]  # (computation id, unit index or None for its plan)

# kombu's Redis transport: the queue is a list; messages handed to a worker and not yet
# acknowledged are in the `unacked` hash (tag -> [message, exchange, routing key]), with the time
# each was handed out in the `unacked_index` zset (epoch seconds, the worker's clock).
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"
CHUNK = 1000


def identify(raw: bytes | dict[str, Any]) -> Key | None:
    """The (computation, unit) a broker message is for (unit ``None``: a plan), or None for others."""
    try:
        msg = orjson.loads(raw) if isinstance(raw, bytes) else raw
        task = msg["headers"]["task"]
        if task not in (names.PLAN, names.UNIT):
            return None
        args = orjson.loads(base64.b64decode(msg["body"]))[0]
        return (str(args[0]), None if task == names.PLAN else int(args[1]))
    except (KeyError, IndexError, TypeError, ValueError, orjson.JSONDecodeError):
        return None


@dataclass
class BrokerSnapshot:
    """Which units wait in the queue, and since when (epoch ms) each reserved one was handed out."""

    queued: set[Key] = field(default_factory=set)
    reserved: dict[Key, int] = field(default_factory=dict)

    @classmethod
    def read(cls, client: redis.Redis, queue: str) -> BrokerSnapshot:
        # the list first, then `unacked`: a message popped in between is then seen in `unacked`
        snap = cls()
        for start in range(0, client.llen(queue), CHUNK):
            for raw in cast(list[bytes], client.lrange(queue, start, start + CHUNK - 1)):
                key = identify(raw)
                if key is not None:
                    snap.queued.add(key)
        index = cast(list[tuple[bytes, float]], client.zrange(UNACKED_INDEX, 0, -1, withscores=True))
        since = {tag.decode(): int(score * 1000) for tag, score in index}
        for tag, raw in cast(dict[bytes, bytes], client.hgetall(UNACKED)).items():
            try:
                key = identify(orjson.loads(raw)[0])
            except (orjson.JSONDecodeError, IndexError, TypeError):
                key = None
            if key is not None:
                snap.reserved[key] = max(snap.reserved.get(key, 0), since.get(tag.decode(), 0))
        return snap

    def waiting(self, key: Key, now_ms: int, grace_ms: int) -> bool:
        """Queued, or reserved by a worker less than ``grace_ms`` ago (about to take its lease)."""
        return key in self.queued or self.reserved.get(key, 0) > now_ms - grace_ms


@dataclass
class PassReport:
    computations: int = 0
    units_sent: int = 0
    plans_sent: int = 0


@dataclass
class Reconciler:
    """One reconciling pass at a time (:meth:`run_once`); ``send(task name, args)`` enqueues."""

    store: JobStore
    send: Callable[[str, tuple[Any, ...]], None]
    queue: str = "celery"
    grace_ms: int = 30_000
    suspects: set[Key] = field(default_factory=set)

    def run_once(self) -> PassReport:
        report = PassReport()
        live = self.store.live_jobs()
        if not live:
            self.suspects.clear()
            return report
        snap = BrokerSnapshot.read(self.store.client, self.queue)
        suspects: set[Key] = set()
        ended: list[str] = []
        for cid, listed_ms in live:
            if not is_job_id(cid):
                ended.append(cid)
                continue
            self.store.expire_overdue(cid)  # a job past its deadline is failed, not handed out again
            table = self.store.unit_table(cid)
            if table.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                ended.append(cid)
                continue
            report.computations += 1
            now = table.now_ms
            if table.status == JobStatus.QUEUED or not table.units:
                # not planned yet (queued), or its plan died before recording the units
                key: Key = (cid, None)
                if listed_ms > now - self.grace_ms or snap.waiting(key, now, 4 * self.grace_ms):
                    continue
                if key in self.suspects:
                    log.warning("job %s: its plan was lost; planning it again", cid)
                    self.send(names.PLAN, (cid,))
                    report.plans_sent += 1
                else:
                    suspects.add(key)
                continue
            for unit in table.pending():
                if unit.live(now):
                    continue
                key = (cid, unit.index)
                if snap.waiting(key, now, self.grace_ms):
                    continue
                lapsed = unit.lapsed(now)  # its holder stopped renewing its lease
                if not lapsed and key not in self.suspects:
                    suspects.add(key)
                    continue
                users = self.store.unit_users(cid, unit.index)
                if users is None:
                    continue
                why = f"its lease (held by {unit.owner}) lapsed" if lapsed else "it was lost in transit"
                log.warning("job %s unit %s: %s; handing it out again", cid, unit.index, why)
                self.send(names.UNIT, (cid, unit.index, users))
                report.units_sent += 1
        self.suspects = suspects
        self.store.forget_live(ended)
        with self.store.client.pipeline(transaction=False) as pipe:
            pipe.hincrby(RECONCILE_STATS_KEY, "passes", 1)
            if report.units_sent:
                pipe.hincrby(RECONCILE_STATS_KEY, "units", report.units_sent)
            if report.plans_sent:
                pipe.hincrby(RECONCILE_STATS_KEY, "plans", report.plans_sent)
            pipe.execute()
        return report


def send_units(celery: Celery, job_id: str, units: list[tuple[int, list[str]]]) -> None:
    """Enqueue a computation's units (the plan does; the reconciler sends them one by one)."""
    with celery.producer_or_acquire() as producer:
        for index, users in units:
            celery.send_task(names.UNIT, args=(job_id, index, users), producer=producer)


class Reconciling(threading.Thread):
    """The worker's reconciling thread: takes the lock when free, reconciles while it holds it."""

    def __init__(self, celery: Celery, store: JobStore) -> None:
        super().__init__(name="reconciler", daemon=True)
        s = get_settings().workers
        self.interval = s.reconcile_interval_s
        self.reconciler = Reconciler(
            store,
            lambda name, args: celery.send_task(name, args=args),
            queue=celery.conf.task_default_queue,
            grace_ms=int(s.unit_lease_s * 1000),
        )
        # the lock outlives a few missed passes, not more: a dead leader is replaced within its ttl
        self.lock = store.client.lock(RECONCILER_KEY, timeout=max(3 * self.interval, 2.0), thread_local=False)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                if not self._lead():
                    continue
                report = self.reconciler.run_once()
                if report.units_sent or report.plans_sent:
                    log.info(
                        "reconciled %d job(s): %d unit(s) and %d plan(s) handed out again",
                        report.computations,
                        report.units_sent,
                        report.plans_sent,
                    )
            except redis.RedisError as exc:  # Redis away: the next pass tries again
                log.warning("reconciler pass skipped: %s", type(exc).__name__)
            except Exception:  # never let the thread die: the next pass tries again
                log.exception("reconciler pass failed")

    def _lead(self) -> bool:
        if self.lock.local.token is not None:
            try:
                self.lock.reacquire()
                return True
            except redis.exceptions.LockError:
                self.lock.local.token = None  # another worker took over while this one was away
        return bool(self.lock.acquire(blocking=False))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=2)
        if self.lock.local.token is not None:
            try:
                self.lock.release()  # the next worker leads at once
            except redis.RedisError:
                pass  # it lapses by itself


class ReconcilerStep(bootsteps.StartStopStep):
    """Worker bootstep: run the reconciling thread in the worker's main process."""

    def __init__(self, w: Any, **kwargs: Any) -> None:
        self.thread: Reconciling | None = None
        super().__init__(w, **kwargs)

    def start(self, w: Any) -> None:
        s = get_settings()
        self.thread = Reconciling(w.app, JobStore.from_url(s.redis.url, s.jobs.ttl_s))
        self.thread.start()

    def stop(self, w: Any) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None

    shutdown = stop
