"""Units' leases and the reconciler's decisions, on a real Redis with real Celery messages in it
(the queue and kombu's ``unacked`` hash as the Redis transport writes them); no worker runs here:
the tests play the workers' part through the job store, and the broker's by moving messages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from sessionizer import tasks as names
from sessionizer.celery_app import make_celery
from sessionizer.jobstore import JobStore, LeaseLost
from sessionizer.settings import load_settings
from worker.reconcile import BrokerSnapshot, Reconciler, identify

REQUEST = {"users": ["a", "b", "c"], "start": "2022-09-20T00:00Z", "end": "2022-10-01T00:00Z"}
UNITS = [(0, ["a"]), (1, ["b"]), (2, ["c"])]


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    st = JobStore.from_url(redis_url)
    yield st
    st.client.close()


@pytest.fixture
def running(store: JobStore) -> str:
    """A running computation of three units, its plan recorded as the plan task records it."""
    job = store.create(REQUEST, deadline_s=600)
    assert store.start(job["id"], len(UNITS), [users for _, users in UNITS])
    return job["id"]


def take(store: JobStore, job_id: str, unit: int, owner: str = "host:1", lease_s: float = 30, max_lost: int = 3) -> Any:
    return store.acquire_unit(job_id, unit, owner, lease_s=lease_s, max_lost=max_lost)


def test_one_lease_at_a_time_and_only_its_holder_stores_the_result(store: JobStore, running: str) -> None:
    first = take(store, running, 0, "host:1")
    assert first.outcome == "ok" and first.runs == 1 and first.lost == 0
    second = take(store, running, 0, "host:2")
    assert second.outcome == "held" and second.holder == "host:1"
    with pytest.raises(LeaseLost):
        store.complete_unit(running, 0, 1, [{"user": "a"}], {"sessions": 1}, lease="not-the-token")
    assert store.done_units(running) == set()
    assert store.complete_unit(running, 0, 1, [{"user": "a"}], {"sessions": 1}, lease=first.token) is False
    assert store.done_units(running) == {0}
    assert take(store, running, 0, "host:3").outcome == "done"  # a copy that comes later stops at once


def test_a_lapsed_lease_is_taken_over_and_its_old_holder_is_fenced(store: JobStore, running: str) -> None:
    old = take(store, running, 1, "host:1", lease_s=0.2)
    time.sleep(0.3)  # its holder stops renewing (paused, cut off)
    new = take(store, running, 1, "host:2")
    assert new.outcome == "ok" and new.runs == 2 and new.lost == 1
    assert store.renew_unit(running, 1, old.token, 30) == "lost"  # the old holder learns it lost the unit
    with pytest.raises(LeaseLost):
        store.complete_unit(running, 1, 1, [{"user": "stale"}], {"sessions": 1}, lease=old.token)
    store.complete_unit(running, 1, 1, [{"user": "b"}], {"sessions": 1}, lease=new.token)
    sessions = store.client.hget(f"sz:job:{running}:sessions", "1")
    assert orjson.loads(sessions) == [{"user": "b"}]  # the late write changed nothing


def test_renewal_and_progress_keep_a_lease_alive(store: JobStore, running: str) -> None:
    grant = take(store, running, 2, "host:1", lease_s=0.4)
    for _ in range(3):
        time.sleep(0.2)
        assert store.renew_unit(running, 2, grant.token, 0.4) == "renewed"
    for n in range(3):
        time.sleep(0.2)
        store.record_progress(running, 2, 10 * n)  # this process holds it: progress renews it
    assert take(store, running, 2, "host:2").outcome == "held"
    store.complete_unit(running, 2, 1, [], {}, lease=grant.token)
    assert store.renew_unit(running, 2, grant.token, 0.4) == "gone"  # stored: nothing to renew, nothing lost


def test_a_unit_handed_back_is_not_a_lost_worker_but_a_dead_one_is(store: JobStore, running: str) -> None:
    for _ in range(5):  # clean stops, as many as may come: never counted
        grant = take(store, running, 0, "host:1", max_lost=2)
        assert grant.outcome == "ok" and grant.lost == 0
        assert store.release_unit(running, 0, owner="host:1")
    dead = take(store, running, 0, "host:1", lease_s=0.1, max_lost=2)
    time.sleep(0.2)
    again = take(store, running, 0, "host:2", lease_s=0.1, max_lost=2)
    assert again.outcome == "ok" and again.lost == 1
    # a holder known dead (its pool process is gone) is taken over without waiting for its lease
    third = store.acquire_unit(running, 0, "host:3", lease_s=30, max_lost=2, dead_token=again.token)
    assert third.outcome == "lost" and third.lost == 2 and dead.token
    assert take(store, running, 1, "host:1", max_lost=2).outcome == "ok"  # other units are unaffected


def test_a_job_no_longer_running_gives_no_lease(store: JobStore, running: str) -> None:
    store.cancel(running)
    assert take(store, running, 0).outcome == "gone"


# --- the reconciler's decisions ------------------------------------------------------------------


@pytest.fixture
def broker(redis_url: str) -> Any:
    return make_celery(load_settings(overrides={"REDIS_URL": redis_url}))


@pytest.fixture
def reconciler(store: JobStore, broker: Any) -> Reconciler:
    sent: list[tuple[str, tuple]] = []

    def send(name: str, args: tuple) -> None:
        sent.append((name, args))
        broker.send_task(name, args=args)

    rec = Reconciler(store, send, grace_ms=500)
    rec.sent = sent  # type: ignore[attr-defined]
    return rec


def queued_keys(client: redis.Redis) -> list[Any]:
    return [identify(raw) for raw in client.lrange("celery", 0, -1)]


def pop_to_unacked(client: redis.Redis, handed_out_at: float) -> None:
    """What kombu's Redis transport does as a worker takes a message: BRPOP, then `unacked`."""
    raw = client.rpop("celery")
    msg = orjson.loads(raw)
    tag = msg["properties"]["delivery_tag"]
    client.hset("unacked", tag, orjson.dumps([msg, "", "celery"]))
    client.zadd("unacked_index", {tag: handed_out_at})


def test_units_waiting_in_the_queue_are_never_sent_again(
    store: JobStore, running: str, broker: Any, reconciler: Reconciler
) -> None:
    for index, users in UNITS:
        broker.send_task(names.UNIT, args=(running, index, users))
    time.sleep(0.6)  # older than the grace
    for _ in range(3):
        reconciler.run_once()
    assert reconciler.sent == []  # type: ignore[attr-defined]
    assert sorted(queued_keys(store.client)) == [(running, 0), (running, 1), (running, 2)]


def test_a_unit_lost_in_transit_is_sent_again_on_the_second_pass(
    store: JobStore, running: str, broker: Any, reconciler: Reconciler
) -> None:
    for index, users in UNITS:
        broker.send_task(names.UNIT, args=(running, index, users))
    store.client.rpop("celery")  # unit 0 popped by a worker that died before recording it anywhere
    time.sleep(0.6)
    reconciler.run_once()
    assert reconciler.sent == []  # type: ignore[attr-defined]  # once: it may be between list and unacked
    reconciler.run_once()
    assert reconciler.sent == [(names.UNIT, (running, 0, ["a"]))]  # type: ignore[attr-defined]
    reconciler.run_once()
    assert len(reconciler.sent) == 1  # type: ignore[attr-defined]  # it is in the queue now
    assert sorted(queued_keys(store.client)) == [(running, 0), (running, 1), (running, 2)]


def test_a_lapsed_lease_is_handed_out_at_once_and_a_live_one_never(
    store: JobStore, running: str, broker: Any, reconciler: Reconciler
) -> None:
    for index, users in UNITS:
        broker.send_task(names.UNIT, args=(running, index, users))
    pop_to_unacked(store.client, time.time())
    pop_to_unacked(store.client, time.time())
    take(store, running, 0, "host:dead", lease_s=0.3)  # its worker dies: the message stays in unacked
    take(store, running, 1, "host:alive", lease_s=30)
    time.sleep(0.6)
    reconciler.run_once()
    assert reconciler.sent == [(names.UNIT, (running, 0, ["a"]))]  # type: ignore[attr-defined]
    for _ in range(2):
        reconciler.run_once()
    assert len(reconciler.sent) == 1  # type: ignore[attr-defined]


def test_a_reserved_unit_without_a_lease_waits_out_the_grace(
    store: JobStore, running: str, broker: Any, reconciler: Reconciler
) -> None:
    broker.send_task(names.UNIT, args=(running, 2, ["c"]))
    store.complete_unit(running, 0, 1, [], {})
    store.complete_unit(running, 1, 1, [], {})
    pop_to_unacked(store.client, time.time() + 3600)  # just handed out (as far as any pass goes)
    for _ in range(3):
        reconciler.run_once()
    assert reconciler.sent == []  # type: ignore[attr-defined]
    store.client.zadd("unacked_index", {k: 1.0 for k in store.client.zrange("unacked_index", 0, -1)})
    reconciler.run_once()  # handed out long ago and never leased: its worker died before it started
    reconciler.run_once()
    assert reconciler.sent == [(names.UNIT, (running, 2, ["c"]))]  # type: ignore[attr-defined]


def test_a_lost_plan_is_sent_again_and_ended_jobs_leave_the_list(store: JobStore, reconciler: Reconciler) -> None:
    job, planned = store.submit(REQUEST, deadline_s=600)
    assert planned
    assert [j for j, _ in store.live_jobs()] == [job["id"]]
    time.sleep(0.6)  # its plan message never reached the queue (the API died, or it was lost)
    reconciler.run_once()
    reconciler.run_once()
    assert reconciler.sent == [(names.PLAN, (job["id"],))]  # type: ignore[attr-defined]
    reconciler.run_once()
    assert len(reconciler.sent) == 1  # type: ignore[attr-defined]  # its plan waits in the queue
    store.cancel(job["id"])
    reconciler.run_once()
    assert store.live_jobs() == []


def test_the_snapshot_reads_a_long_queue_by_chunks(store: JobStore, running: str, broker: Any) -> None:
    with broker.producer_or_acquire() as producer:
        for index in range(2500):
            broker.send_task(names.UNIT, args=(running, index, [f"u{index}"]), producer=producer)
    snap = BrokerSnapshot.read(store.client, "celery")
    assert snap.queued == {(running, index) for index in range(2500)}
