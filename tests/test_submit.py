"""The submit service without HTTP: idempotency, shared results, the active-jobs cap, enqueueing
and the rollback, against a real Redis (the Celery queue in it is read back, no worker runs)."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from devstack import free_port
from sessionizer.celery_app import make_celery
from sessionizer.jobstore import JobStore
from sessionizer.settings import load_settings
from tests.helpers import FUTURE, PAST, Queue, unique
from webapp.jobs.submit import (
    ActiveJobsCapped,
    IdempotencyMismatch,
    IdempotencyPending,
    JobSubmitter,
    QueueUnavailable,
    request_digest,
)


@pytest.fixture
def submitter(redis_url: str, events_file) -> JobSubmitter:
    # a file source the submitter can identify: results on it are shared (sessionizer/datasource.py)
    settings = load_settings(
        {},
        overrides={
            "REDIS_URL": redis_url,
            "MAX_ACTIVE_JOBS": 0,
            "EVENT_SOURCE": "file",
            "EVENTS_PATH": str(events_file),
        },
    )
    return JobSubmitter(JobStore.from_url(redis_url, 600), make_celery(settings), settings)


def test_a_new_job_is_queued_and_its_plan_sent(submitter: JobSubmitter, redis_client: redis.Redis) -> None:
    queue = Queue(redis_client)
    done = submitter.submit("alice", unique(FUTURE, "new"))
    assert done.job["status"] == "queued" and done.job["owner"] == "alice" and done.headers == {}
    assert queue == [("sessionizer.plan", [done.job["id"]])]


def test_idempotency_replays_refuses_another_body_and_a_pending_twin(
    submitter: JobSubmitter, redis_client: redis.Redis
) -> None:
    queue = Queue(redis_client)
    body = unique(FUTURE, "idem")
    first = submitter.submit("alice", body, idempotency_key="k-1")
    again = submitter.submit("alice", body, idempotency_key="k-1")
    assert again.job["id"] == first.job["id"] and again.headers == {"Idempotent-Replayed": "true"}
    assert len(queue.sent()) == len(queue.before) + 1  # submitted once
    with pytest.raises(IdempotencyMismatch) as mismatch:
        submitter.submit("alice", unique(FUTURE, "other"), idempotency_key="k-1")
    assert mismatch.value.status == 422 and "Idempotency-Key" in mismatch.value.extra["errors"]
    other_key_owner = submitter.submit("bob", body, idempotency_key="k-1")  # keys are per owner
    assert other_key_owner.job["id"] != first.job["id"]
    pending = unique(FUTURE, "pending")
    assert submitter.store.idempotency.reserve("alice", "k-2", request_digest(pending)) == ("new", None)
    with pytest.raises(IdempotencyPending) as busy:
        submitter.submit("alice", pending, idempotency_key="k-2")
    assert busy.value.status == 409 and busy.value.headers == {"Retry-After": "1"}


def test_identical_past_requests_share_and_no_cache_runs_afresh(submitter: JobSubmitter) -> None:
    body = unique(PAST, "share")
    first = submitter.submit("alice", body).job
    second = submitter.submit("alice", {**body, "users": body["users"][::-1]}).job
    assert second["id"] != first["id"] and second["computation"] == first["computation"]
    # another key runs its own, unless the deployment shares results across keys
    assert submitter.submit("bob", body).job["computation"] != first["computation"]
    across = dataclasses.replace(submitter, settings=submitter.settings.replace(SHARE_RESULTS_ACROSS_KEYS=True))
    shared = unique(PAST, "across")
    carol = across.submit("carol", shared).job
    assert across.submit("dave", shared).job["computation"] == carol["computation"]
    fresh = submitter.submit("alice", body, cache_control="no-cache").job
    assert fresh["computation"] == fresh["id"] != first["computation"]
    future = unique(FUTURE, "noshare")
    assert submitter.submit("alice", future).job["computation"] != submitter.submit("alice", future).job["computation"]


def test_the_active_jobs_cap_refuses_with_retry_after(submitter: JobSubmitter) -> None:
    submitter = dataclasses.replace(submitter, settings=submitter.settings.replace(MAX_ACTIVE_JOBS=2))
    jobs = [submitter.submit("carol", unique(FUTURE, f"cap{i}")).job for i in range(2)]
    with pytest.raises(ActiveJobsCapped) as capped:
        submitter.submit("carol", unique(FUTURE, "cap2"), idempotency_key="k-cap")
    assert capped.value.status == 429 and "2 jobs" in capped.value.message and capped.value.headers["Retry-After"]
    assert submitter.store.idempotency.reserve("carol", "k-cap", "x") == (
        "new",
        None,
    )  # the refused submit freed its key
    submitter.store.cancel(jobs[0]["id"])
    assert submitter.submit("carol", unique(FUTURE, "cap3")).job["status"] == "queued"


def test_a_broker_down_fails_the_job_and_frees_the_key(redis_url: str) -> None:
    settings = load_settings({}, overrides={"REDIS_URL": redis_url})
    store = JobStore.from_url(redis_url, 600)
    # nothing listens on that port: the plan cannot be sent
    broken = make_celery(settings.replace(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    submitter = JobSubmitter(store, broken, settings)
    with pytest.raises(QueueUnavailable) as down:
        submitter.submit("dave", unique(FUTURE, "down"), idempotency_key="k-down")
    assert down.value.status == 503 and down.value.headers == {"Retry-After": "5"}
    page = store.list_jobs("dave", limit=5)
    assert [j["status"] for j in page.jobs] == ["failed"] and page.jobs[0]["error"]["type"] == "enqueue_failed"
    assert store.idempotency.reserve("dave", "k-down", "x") == ("new", None)
