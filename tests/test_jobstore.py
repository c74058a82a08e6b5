"""The job store: transitions are compare-and-set, units are idempotent, deadlines fail stuck jobs."""

from __future__ import annotations

import time

import pytest

from sessionizer.jobstore import JobStore

REQUEST = {"users": ["a", "b"], "start": "2022-09-22T00:00:00Z", "end": "2022-09-23T00:00:00Z", "method": "gap", "params": {}}


@pytest.fixture
def store(redis_url) -> JobStore:  # noqa: ANN001
    return JobStore.from_url(redis_url, ttl_s=600)


def test_lifecycle_and_join(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    assert job["status"] == "queued" and job["progress"]["users_total"] == 2
    assert store.start(job["id"], 2) and not store.start(job["id"], 2)  # only once
    assert store.complete_unit(job["id"], 0, 1, [{"user": "a"}], {"events": 3, "sessions": 1}) is False
    # a redelivered unit overwrites its own result: still not done, nothing counted twice
    assert store.complete_unit(job["id"], 0, 1, [{"user": "a"}], {"events": 3, "sessions": 1}) is False
    store.record_progress(job["id"], 1, 10)
    store.record_progress(job["id"], 1, 12)
    assert store.complete_unit(job["id"], 1, 1, [{"user": "b"}], {"events": 4, "sessions": 1}) is True
    assert store.finish(job["id"]) and not store.finish(job["id"])
    done = store.get(job["id"])
    assert done["status"] == "succeeded" and done["stats"] == {"events": 7, "sessions": 2}
    assert done["progress"] == {"users_total": 2, "users_done": 2, "events_scanned": 12}
    assert store.sessions(job["id"]) == [{"user": "a"}, {"user": "b"}]


def test_a_failed_or_cancelled_job_never_becomes_a_success(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    store.start(job["id"], 1)
    assert store.fail(job["id"], "source_error", "index [x] not found")
    store.complete_unit(job["id"], 0, 2, [], {})
    assert not store.finish(job["id"]) and not store.cancel(job["id"])
    got = store.get(job["id"])
    assert got["status"] == "failed" and got["error"] == {"type": "source_error", "message": "index [x] not found"}

    other = store.create(REQUEST, deadline_s=60)
    assert store.cancel(other["id"]) and not store.start(other["id"], 1)
    assert store.get(other["id"])["status"] == "cancelled"


def test_past_its_deadline_a_job_is_failed_when_read(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=0.05)
    store.start(job["id"], 2)
    time.sleep(0.1)
    got = store.get(job["id"])
    assert got["status"] == "failed" and got["error"]["type"] == "deadline_exceeded"


def test_unknown_and_deleted_jobs_are_none(store: JobStore) -> None:
    assert store.get("nope") is None
    job = store.create(REQUEST, deadline_s=60)
    assert store.delete(job["id"]) and store.get(job["id"]) is None


def test_every_key_has_the_ttl(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    store.start(job["id"], 1)
    store.record_progress(job["id"], 0, 5)
    store.complete_unit(job["id"], 0, 2, [], {"events": 0})
    keys = store.client.keys(f"sz:job:{job['id']}*")
    assert len(keys) == 6  # the five of the computation, and the set of jobs following it
    assert all(0 < store.client.ttl(k) <= 600 for k in keys)


def test_done_units_are_what_a_redelivered_plan_skips(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    store.start(job["id"], 3)
    store.complete_unit(job["id"], 2, 1, [], {})
    store.complete_unit(job["id"], 0, 1, [], {})
    assert store.done_units(job["id"]) == {0, 2}


def test_wait_slots_are_counted_per_owner_and_a_dead_waiters_slot_lapses(store: JobStore) -> None:
    owner = f"waiter-{time.monotonic_ns()}"
    assert store.take_wait_slot(owner, "t1", 30, cap=2) and store.take_wait_slot(owner, "t2", 30, cap=2)
    assert not store.take_wait_slot(owner, "t3", 30, cap=2)  # at the cap
    assert store.take_wait_slot(f"{owner}-other", "t1", 30, cap=2)  # another owner's slots are its own
    store.release_wait_slot(owner, "t1")
    assert store.take_wait_slot(owner, "t3", 30, cap=2)
    # a process that died mid-wait never releases its slot: a token whose time is over is dropped
    store.client.zadd(f"sz:waits:{owner}", {"t2": 1})
    assert store.take_wait_slot(owner, "t4", 30, cap=2)
    assert {m.decode() for m in store.client.zrange(f"sz:waits:{owner}", 0, -1)} == {"t3", "t4"}
    assert 0 < store.client.pttl(f"sz:waits:{owner}") <= 31_000
