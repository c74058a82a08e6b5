"""The job store: transitions are compare-and-set, units are idempotent, deadlines fail stuck jobs."""

from __future__ import annotations

import time
import uuid

import pytest

from sessionizer.jobstore import JobStore
from sessionizer.jobstore.keys import JobKeys, OwnerJobs

REQUEST = {
    "users": ["a", "b"],
    "start": "2022-09-22T00:00:00Z",
    "end": "2022-09-23T00:00:00Z",
    "method": "gap",
    "params": {},
}


@pytest.fixture
def store(redis_url) -> JobStore:
    return JobStore.from_url(redis_url, ttl_s=600)


def test_lifecycle_and_join(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    assert job["status"] == "queued" and job["progress"]["users_total"] == 2
    assert store.start(job["id"], 2) and not store.start(job["id"], 2)  # only once
    assert store.complete_unit(job["id"], 0, 1, [{"user": "a"}], {"events": 3, "sessions": 1}) is False
    # a redelivered unit overwrites its own result: still not done, nothing counted twice
    assert store.complete_unit(job["id"], 0, 1, [{"user": "a"}], {"events": 3, "sessions": 1}) is False
    store.record_progress(job["id"], 1, 10, 0)
    store.record_progress(job["id"], 1, 12, 5)
    assert store.complete_unit(job["id"], 1, 1, [{"user": "b"}], {"events": 4, "sessions": 1}) is True
    assert store.finish(job["id"]) and not store.finish(job["id"])
    done = store.get(job["id"])
    assert done["status"] == "succeeded" and done["stats"]["events"] == 7 and done["stats"]["sessions"] == 2
    assert done["progress"] == {"users_total": 2, "users_done": 2, "events_scanned": 12, "events_from_source": 5}
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
    assert store.wait_slots.take(owner, "t1", 30, cap=2) and store.wait_slots.take(owner, "t2", 30, cap=2)
    assert not store.wait_slots.take(owner, "t3", 30, cap=2)  # at the cap
    assert store.wait_slots.take(f"{owner}-other", "t1", 30, cap=2)  # another owner's slots are its own
    store.wait_slots.release(owner, "t1")
    assert store.wait_slots.take(owner, "t3", 30, cap=2)
    # a process that died mid-wait never releases its slot: a token whose time is over is dropped
    store.client.zadd(f"sz:waits:{owner}", {"t2": 1})
    assert store.wait_slots.take(owner, "t4", 30, cap=2)
    assert {m.decode() for m in store.client.zrange(f"sz:waits:{owner}", 0, -1)} == {"t3", "t4"}
    assert 0 < store.client.pttl(f"sz:waits:{owner}") <= 31_000


def test_reads_never_write_an_overdue_job_is_recorded_failed_by_an_explicit_step(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=0.05)
    store.start(job["id"], 2)
    time.sleep(0.1)
    shown = store.view(job["id"])
    assert shown["status"] == "failed" and shown["error"]["type"] == "deadline_exceeded" and shown["overdue"]
    assert store.status(job["id"]) == "running"  # reading wrote nothing
    assert store.expire_overdue(job["id"]) and not store.expire_overdue(job["id"])
    recorded = store.get(job["id"])
    assert store.status(job["id"]) == "failed" and not recorded["overdue"]
    assert (
        recorded["error"] == shown["error"] and recorded["finished_at"] == shown["finished_at"] == shown["deadline_at"]
    )
    assert not store.expire_overdue(store.create(REQUEST, deadline_s=60)["id"])  # in time: nothing to do


def test_the_lua_scripts_ship_as_package_data_and_spell_keys_as_keys_py() -> None:
    from importlib import resources

    from sessionizer.jobstore.keys import JobKeys, lua_preamble
    from sessionizer.jobstore.scripts import Scripts, source

    shipped = {p.name for p in resources.files("sessionizer.jobstore").joinpath("scripts").iterdir()}
    assert shipped == {f"{name}.lua" for name in Scripts.__dataclass_fields__}
    for name in Scripts.__dataclass_fields__:
        text = source(name)
        assert text.startswith(lua_preamble()) and "sz:" not in text[len(lua_preamble()) :]  # no key spelt twice
    assert f"'{JobKeys(str(uuid.uuid4())).hash.rsplit(':', 1)[0]}:'" in lua_preamble()


def test_a_listing_reports_gone_jobs_and_only_forget_listed_drops_them(store: JobStore) -> None:
    kept = store.create(REQUEST, deadline_s=60, owner="o")
    gone = store.create(REQUEST, deadline_s=60, owner="o")
    store.client.delete(*JobKeys(gone["id"]).family())  # as if it had expired
    page = store.list_jobs("o", limit=10)
    assert [j["id"] for j in page.jobs] == [kept["id"]] and page.gone == [gone["id"]]
    assert store.client.zcard(OwnerJobs.key("o")) == 2  # the listing wrote nothing
    store.forget_listed("o", page.gone)
    assert store.client.zcard(OwnerJobs.key("o")) == 1


def test_a_unit_finishing_after_its_job_was_deleted_writes_nothing_back(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    assert store.start(job["id"], 2)
    store.record_progress(job["id"], 0, 10)
    store.cancel(job["id"], "deleted by the client")
    assert store.delete(job["id"])
    # what a unit still running does next: report progress, take a lease, store its result
    store.record_progress(job["id"], 1, 12, 5)
    assert store.acquire_unit(job["id"], 1, "w", lease_s=30, max_lost=3).outcome == "gone"
    assert store.complete_unit(job["id"], 1, 1, [{"user": "b"}], {"events": 4}) is False
    assert not store.finish(job["id"])
    assert [k for k in store.client.scan_iter(match="*") if job["id"].encode() in k] == []


def test_no_key_is_derived_from_a_malformed_id(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    for crafted in (f"{job['id']}:done", f"{job['id']}:sessions", job["id"].upper(), "", "*"):
        assert store.view(crafted) is None and store.get(crafted) is None and store.status(crafted) is None
        with pytest.raises(ValueError):
            store.complete_unit(crafted, 0, 1, [], {})
