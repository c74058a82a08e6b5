"""The store's typed records (``sessionizer/jobstore/records.py``), read from a real Redis: a job as
a frozen ``JobRecord`` whose JSON is the API's job body, and each unit of a computation as a
``UnitRecord`` (dispatched, running under a lease, done)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from sessionizer.jobstore import (
    JobError,
    JobPage,
    JobRecord,
    JobStore,
    Progress,
    UnitRecord,
    UnitState,
)
from sessionizer.status import JobStatus
from webapp.jobs.schemas import JobSchema

REQUEST = {"users": ["a", "b", "c"], "start": "2022-09-20T00:00:00Z", "end": "2022-10-01T00:00:00Z"}
PLAN = [["a"], ["b"], ["c"]]


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore.from_url(redis_url, ttl_s=600)


def test_a_job_reads_as_a_frozen_typed_record(store: JobStore) -> None:
    job, planned = store.submit(REQUEST, deadline_s=60, owner="o")
    assert planned and isinstance(job, JobRecord)
    assert job.status is JobStatus.QUEUED and job.owner == "o" and job.computation == job.id and not job.shared
    assert job.progress == Progress(users_total=3, users_done=0, events_scanned=0, events_from_source=0)
    assert job.request == REQUEST and job.error is None and job.stats is None and job.active
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = JobStatus.RUNNING  # type: ignore[misc]  # the point: a record cannot be changed


def test_progress_error_and_stats_are_named_values(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    store.start(job.id, 3, PLAN)
    store.record_progress(job.id, 0, 10, 4)
    store.complete_unit(job.id, 0, 1, [{"user": "a"}], {"events": 10, "sessions": 1})
    running = store.get(job.id)
    assert running is not None and running.status is JobStatus.RUNNING and running.units_total == 3
    assert running.progress == Progress(users_total=3, users_done=1, events_scanned=10, events_from_source=4)
    store.fail(job.id, "source_error", "index [x] not found")
    failed = store.get(job.id)
    assert failed is not None and not failed.active and failed.finished_at is not None
    assert failed.error == JobError("source_error", "index [x] not found")


def test_the_json_of_a_record_is_the_api_job_body(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    store.start(job.id, 1, [["a", "b", "c"]])
    store.complete_unit(job.id, 0, 3, [], {"events": 5})
    store.finish(job.id)
    done = store.view(job.id)
    assert done is not None
    as_json = done.as_json()
    # every documented field is the record's, in plain JSON values (the status a plain string)
    assert set(JobSchema().fields) - {"links"} <= set(as_json)
    assert type(as_json["status"]) is str and as_json["status"] == "succeeded"
    assert as_json["progress"] == {"users_total": 3, "users_done": 3, "events_scanned": 0, "events_from_source": 0}
    assert as_json["stats"]["events"] == 5 and as_json["error"] is None
    # read by key, a record answers as its JSON does (what the dicts it replaced were)
    assert all(done[name] == value for name, value in as_json.items())
    with pytest.raises(KeyError):
        done["links"]


def test_a_followed_computation_reads_as_shared(store: JobStore) -> None:
    first, _ = store.submit(REQUEST, deadline_s=60, owner="o")
    second, planned = store.submit(REQUEST, deadline_s=60, owner="o")
    assert not planned and second.shared and second.computation == first.id != second.id


def test_a_listing_is_a_page_of_records(store: JobStore) -> None:
    ids = [store.create(REQUEST, deadline_s=60, owner="lister").id for _ in range(3)]
    page = store.list_jobs("lister", limit=2)
    assert isinstance(page, JobPage) and all(isinstance(j, JobRecord) for j in page.jobs)
    assert [j.id for j in page.jobs] == ids[::-1][:2] and page.next_seq == page.jobs[-1].seq
    rest = store.list_jobs("lister", limit=2, before_seq=page.next_seq)
    assert [j.id for j in rest.jobs] == ids[:1] and rest.next_seq is None and rest.gone == []


def test_units_read_as_dispatched_running_and_done(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    assert store.unit_table(job.id).units == {}  # no plan recorded yet
    store.start(job.id, 3, PLAN)
    grant = store.acquire_unit(job.id, 0, "host:1", lease_s=30, max_lost=3)
    assert grant.outcome == "ok" and grant.runs == 1
    store.acquire_unit(job.id, 1, "host:2", lease_s=30, max_lost=3)
    store.complete_unit(job.id, 1, 1, [], {}, lease=store.held[(job.id, 1)][0])
    table = store.unit_table(job.id)
    assert table.status is JobStatus.RUNNING and sorted(table.units) == [0, 1, 2]
    running, done, waiting = table.units[0], table.units[1], table.units[2]
    assert running.state is UnitState.RUNNING and running.owner == "host:1" and running.token == grant.token
    assert (
        running.attempt == 1 and running.lost == 0 and running.live(table.now_ms) and not running.lapsed(table.now_ms)
    )
    assert running.lease_deadline_ms > table.now_ms
    assert done.state is UnitState.DONE and waiting == UnitRecord(2, UnitState.DISPATCHED)
    assert [u.index for u in table.pending()] == [0, 2]


def test_a_handed_back_unit_is_dispatched_again_and_keeps_its_attempts(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    store.start(job.id, 3, PLAN)
    grant = store.acquire_unit(job.id, 2, "host:1", lease_s=30, max_lost=3)
    assert store.release_unit(job.id, 2, token=grant.token)
    unit = store.unit_table(job.id).units[2]
    assert unit.state is UnitState.DISPATCHED and unit.attempt == 1 and unit.token == "" and unit.lost == 0


def test_a_lapsed_lease_reads_as_running_but_not_live_and_a_new_run_counts_it_lost(store: JobStore) -> None:
    job = store.create(REQUEST, deadline_s=60)
    store.start(job.id, 3, PLAN)
    store.acquire_unit(job.id, 0, "host:1", lease_s=0.05, max_lost=3)
    time.sleep(0.2)  # past the lease, on any clock
    table = store.unit_table(job.id)
    lapsed = table.units[0]
    assert lapsed.state is UnitState.RUNNING and lapsed.lapsed(table.now_ms) and not lapsed.live(table.now_ms)
    again = store.acquire_unit(job.id, 0, "host:2", lease_s=30, max_lost=3)
    assert (again.outcome, again.runs, again.lost) == ("ok", 2, 1)
    held = store.acquire_unit(job.id, 0, "host:3", lease_s=30, max_lost=3)
    assert (held.outcome, held.holder, held.holder_token) == ("held", "host:2", again.token)
