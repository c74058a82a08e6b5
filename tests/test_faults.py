"""Jobs that survive faults, end to end: real Redis, real Celery worker subprocesses, the official
Elasticsearch client against the protocol test server (the esproto package) made to misbehave."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from devstack import start_redis
from esproto import EsProtocolServer
from tests.helpers import RedisDatabases, WorkerProcess, planted_documents, wait_finished, worker_env

pytestmark = pytest.mark.slow  # real Celery worker subprocesses

INDEX = "usage-events"
CROWD = [f"user{i:02d}" for i in range(12)]
REQUEST = {"users": CROWD + ["romain", "anes"], "start": "2022-09-20T00:00Z", "end": "2022-10-01T00:00Z"}


def crowd_documents() -> list[dict[str, Any]]:
    """12 users, each with 6 sessions of ~30 events over several days."""
    rng = np.random.default_rng(3)
    docs = []
    t0 = 1663664400000  # 2022-09-20T09:00Z
    for u, user in enumerate(CROWD):
        for s in range(6):
            t = t0 + s * 43_200_000 + u * 600_000
            for _ in range(int(rng.integers(20, 40))):
                t += int(rng.exponential(30_000)) + 1000
                docs.append(
                    {"@timestamp": t, "util": user, "ecran": f"s{int(rng.integers(9))}", "instance": f"i{u % 3}"}
                )
    return docs


@pytest.fixture(scope="module")
def es() -> Iterator[EsProtocolServer]:
    with EsProtocolServer() as server:
        server.create_index(
            INDEX,
            mappings={
                "properties": {
                    "@timestamp": {"type": "date"},
                    "util": {"type": "keyword"},
                    "ecran": {"type": "keyword"},
                    "instance": {"type": "keyword"},
                }
            },
        )
        server.add_documents(
            INDEX, crowd_documents() + [d for d in planted_documents() if d["@timestamp"] != "garbage"]
        )
        yield server


@pytest.fixture
def stack(es: EsProtocolServer, redis_databases: RedisDatabases, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start workers (on a Redis database of this test's own) and get an API client on it."""
    started: list[WorkerProcess] = []
    taken: list[str] = []
    es.faults.reset()

    def start(redis_url: str | None = None, **extra: str) -> tuple[Any, Callable[[], WorkerProcess]]:
        from webapp import create_app

        if redis_url is None:
            redis_url = redis_databases.take()
            taken.append(redis_url)
        url = redis_url
        env = worker_env(
            url,
            **{
                "EVENT_SOURCE": "elasticsearch",
                "ELASTICSEARCH_URL": es.url,
                "ELASTICSEARCH_INDEX": INDEX,
                "ELASTICSEARCH_PAGE_SIZE": "25",
                "CELERY_VISIBILITY_TIMEOUT_S": "60",
                "CELERY_RESTORE_INTERVAL_S": "1",
                **extra,
            },
        )

        def new_worker(concurrency: int = 2) -> WorkerProcess:
            w = WorkerProcess(
                env, tmp_path / f"worker{len(started)}.log", concurrency=concurrency, name=f"w{len(started)}"
            )
            started.append(w)
            return w.start()

        return create_app({"TESTING": True, "REDIS_URL": url}).test_client(), new_worker

    yield start
    for w in started:
        if w.proc and w.proc.poll() is None:
            # Celery logs every thread's stack on SIGUSR1: shown with the output of a failed test
            os.killpg(w.proc.pid, signal.SIGUSR1)
    time.sleep(0.5 if started else 0)
    for w in started:
        w.stop(signal.SIGKILL)
        print(f"--- {w.log.name} (tail) ---\n" + w.log.read_text(errors="replace")[-6000:])
    for url in taken:
        redis_databases.give_back(url)
    es.faults.reset()


def sessions_of(client: Any, job_id: str) -> list[dict[str, Any]]:
    resp = client.get(f"/jobs/{job_id}/sessions")
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["sessions"]


def submit(client: Any, body: dict[str, Any] = REQUEST) -> str:
    resp = client.post("/jobs", json=body, headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()["id"]


@pytest.fixture(scope="module")
def undisturbed(
    es: EsProtocolServer, redis_databases: RedisDatabases, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    """The sessions of an undisturbed run, the yardstick of every fault test."""
    from webapp import create_app

    url = redis_databases.take()
    env = worker_env(
        url,
        EVENT_SOURCE="elasticsearch",
        ELASTICSEARCH_URL=es.url,
        ELASTICSEARCH_INDEX=INDEX,
        ELASTICSEARCH_PAGE_SIZE="25",
    )
    worker = WorkerProcess(env, tmp_path_factory.mktemp("undisturbed") / "worker.log").start()
    try:
        client = create_app({"TESTING": True, "REDIS_URL": url}).test_client()
        job = wait_finished(client, submit(client))
        assert job["status"] == "succeeded", job
        sessions = sessions_of(client, job["id"])
    finally:
        worker.stop()
        redis_databases.give_back(url)
    assert len({s["user"] for s in sessions}) == len(REQUEST["users"])
    return sessions


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_transient_errors_are_retried_to_an_identical_result(stack, es, undisturbed) -> None:
    client, new_worker = stack(ELASTICSEARCH_RETRY_MAX_ATTEMPTS="12")
    new_worker()
    assert es.open_pits == 0  # (the SIGKILL test, which leaks its PITs until they expire, runs last)
    es.faults.fail_searches(0.3, kinds=(429, 503, "reset"), seed=11)
    job = wait_finished(client, submit(client), timeout=120)
    assert job["status"] == "succeeded", job
    assert sum(es.faults.injected[k] for k in ("429", "503", "reset")) >= 5, es.faults.injected
    assert sessions_of(client, job["id"]) == undisturbed
    assert es.open_pits == 0  # every PIT this job opened was closed, retries included


def test_an_elasticsearch_that_always_fails_fails_the_job_within_the_retry_bound(stack, es) -> None:
    client, new_worker = stack(ELASTICSEARCH_RETRY_MAX_ELAPSED_S="3")
    new_worker()
    es.faults.always(503)
    started = time.monotonic()
    job = wait_finished(client, submit(client), timeout=60)
    elapsed = time.monotonic() - started
    assert job["status"] == "failed" and job["error"]["type"] == "unavailable", job
    assert "503" in job["error"]["message"]
    assert elapsed < 30, elapsed  # bounded by the retry budget (3 s) plus start-up, not minutes
    resp = client.get(f"/jobs/{job['id']}/sessions")
    assert resp.status_code == 409 and "503" in resp.get_json()["detail"]  # never a partial result


def test_an_expired_point_in_time_restarts_the_scan_exactly(stack, es, undisturbed) -> None:
    client, new_worker = stack()
    new_worker()
    es.faults.expire_pit_after(2, times=3)  # even all on one unit: within its 3 restarts
    job = wait_finished(client, submit(client), timeout=90)
    assert job["status"] == "succeeded", job
    assert es.faults.injected["pit_expired"] >= 1, es.faults.injected
    assert sessions_of(client, job["id"]) == undisturbed


def test_a_missing_index_fails_the_job_with_a_clear_error(stack, es) -> None:
    client, new_worker = stack(ELASTICSEARCH_INDEX="no-such-index")
    new_worker()
    job = wait_finished(client, submit(client), timeout=60)
    assert job["status"] == "failed" and "no-such-index" in job["error"]["message"], job


def test_cancel_while_running_stops_the_job(stack, es) -> None:
    client, new_worker = stack()
    new_worker()
    es.faults.delay(0.1)
    job_id = submit(client)
    wait_until(lambda: client.get(f"/jobs/{job_id}").get_json()["progress"]["users_done"] >= 1, what="a unit done")
    log_mark = len(es.log)
    resp = client.post(f"/jobs/{job_id}/cancel")
    assert resp.status_code == 202 and resp.get_json()["status"] == "cancelled"
    done_at_cancel = resp.get_json()["progress"]["users_done"]
    time.sleep(3)  # what would have run next has had time to run
    job = client.get(f"/jobs/{job_id}").get_json()
    assert job["status"] == "cancelled" and job["error"]["type"] == "cancelled"
    # at most the units already running (concurrency 2) may finish; none starts after the cancel
    assert job["progress"]["users_done"] <= done_at_cancel + 2
    pits_opened_after = sum(1 for r in list(es.log)[log_mark:] if r.path.endswith("/_pit") and r.method == "POST")
    assert pits_opened_after <= 2, pits_opened_after
    assert client.get(f"/jobs/{job_id}/sessions").status_code == 409


def units_busy(celery: Any) -> bool:
    """Is any unit still running or reserved on a worker? (No reply counts as busy.)"""
    inspect = celery.control.inspect(timeout=2)
    active, reserved = inspect.active(), inspect.reserved()
    if active is None or reserved is None:
        return True
    return any(active.values()) or any(reserved.values())


def test_a_job_deleted_mid_run_leaves_no_key_once_its_units_stop(stack, es) -> None:
    client, new_worker = stack()
    new_worker()
    es.faults.delay(0.1)  # slow pages: the delete lands while units run
    job_id = submit(client)
    wait_until(lambda: client.get(f"/jobs/{job_id}").get_json()["progress"]["users_done"] >= 1, what="a unit done")
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    svc = client.application.extensions["sessionizer"]
    # running units stop at their next page, queued ones are skipped; none writes anything back
    wait_until(
        lambda: not units_busy(svc.celery) and svc.store.client.llen("celery") == 0,
        timeout=90,
        what="the job's units to stop",
    )
    left = [k.decode() for k in svc.store.client.scan_iter(match="*", count=1000) if job_id.encode() in k]
    assert left == []
    assert svc.store.client.zscore("sz:owner::jobs", job_id) is None
    assert client.get(f"/jobs/{job_id}").status_code == 404


def test_redis_restarted_mid_job_finishes_or_fails_clearly(stack, es, tmp_path, undisturbed) -> None:
    with start_redis(tmp_path / "redis") as own_redis:
        client, new_worker = stack(redis_url=own_redis.url)
        new_worker()
        es.faults.delay(0.05)
        job_id = submit(client)
        wait_until(lambda: client.get(f"/jobs/{job_id}").get_json()["progress"]["users_done"] >= 1, what="a unit done")
        own_redis.restart()  # AOF brings the job back; clients reconnect
        job = wait_finished(client, job_id, timeout=120)
        # the job store rides out the restart (retries with backoff) and the broker's messages
        # survive in the AOF, so the job completes rather than merely failing cleanly
        assert job["status"] == "succeeded", job
        assert sessions_of(client, job_id) == undisturbed


# --- every way a unit can give up ends in a failed job that says why --------------------------
ONE_USER = {"users": ["romain"], "start": "2022-09-20T00:00Z", "end": "2022-10-01T00:00Z"}  # 4 pages of 25


def pits_opened(es: EsProtocolServer) -> int:
    return sum(1 for r in list(es.log) if r.method == "POST" and r.path.endswith("/_pit"))


def test_a_point_in_time_that_keeps_expiring_fails_the_job(stack, es) -> None:
    client, new_worker = stack()
    new_worker()
    es.faults.expire_pit_after(1, times=1000)  # every PIT dies after its first page
    before = pits_opened(es)
    job = wait_finished(client, submit(client, ONE_USER), timeout=60)
    assert job["status"] == "failed" and job["error"]["type"] == "pit_expired", job
    assert "expired 4 times" in job["error"]["message"]
    assert pits_opened(es) - before == 4  # the first read and its 3 restarts, no more
    assert es.open_pits == 0


def test_a_unit_past_the_soft_time_limit_fails_the_job(stack, es) -> None:
    # The limit fires while the unit waits for Elasticsearch: the transport wraps it in a
    # ConnectionError, which must not be retried as one (the unit would run on to the hard limit).
    client, new_worker = stack(CELERY_SOFT_TIME_LIMIT_S="1")
    new_worker()
    es.faults.delay(1.0)
    job = wait_finished(client, submit(client, ONE_USER), timeout=60)
    assert job["status"] == "failed" and job["error"]["type"] == "time_limit", job
    assert "(1 s)" in job["error"]["message"]


def test_a_unit_killed_at_the_hard_time_limit_fails_the_job(stack, es) -> None:
    # No soft limit before it (0 = none; as when a unit is stuck in C code, out of reach of the
    # soft limit's signal): the pool process is killed and only the worker's main process can
    # tell the job.
    client, new_worker = stack(CELERY_TIME_LIMIT_S="2", CELERY_SOFT_TIME_LIMIT_S="0")
    new_worker()
    es.faults.delay(1.0)
    job = wait_finished(client, submit(client, ONE_USER), timeout=60)
    assert job["status"] == "failed" and job["error"]["type"] == "time_limit", job
    assert "hard time limit (2 s)" in job["error"]["message"]


def test_a_unit_that_keeps_losing_its_worker_fails_the_job(stack, es) -> None:
    import psutil

    client, new_worker = stack()
    worker = new_worker(concurrency=1)  # one pool process: the one running the unit
    es.faults.delay(0.5)
    job_id = submit(client, ONE_USER)
    kills = 0
    for _ in range(6):  # more than the unit may take: it must stop coming back by itself
        seen = pits_opened(es)
        try:
            wait_until(
                lambda seen=seen: (
                    pits_opened(es) > seen
                    or client.get(f"/jobs/{job_id}").get_json()["status"] not in ("queued", "running")
                ),
                timeout=30,
                what="the unit to start again",
            )
        except AssertionError:
            break
        if pits_opened(es) == seen:
            break  # the job ended
        (child,) = psutil.Process(worker.proc.pid).children()
        child.kill()  # as the OOM killer would: the unit's worker process dies mid-read
        child.wait(10)
        kills += 1
    job = wait_finished(client, job_id, timeout=30)
    assert job["status"] == "failed" and job["error"]["type"] == "worker_lost", job
    assert kills == 3 and "lost its worker 3 times" in job["error"]["message"], (kills, job)


def test_an_error_escaping_a_task_fails_the_job(stack, es, redis_databases) -> None:
    # A job whose request the worker cannot read (written to the store by hand): the plan task
    # raises, and the failure still reaches the job instead of leaving it queued.
    from sessionizer import tasks
    from sessionizer.celery_app import make_celery
    from sessionizer.jobstore import JobStore
    from sessionizer.settings import load_settings

    url = redis_databases.take()
    try:
        client, new_worker = stack(redis_url=url)
        new_worker()
        job = JobStore.from_url(url).create({"start": "2022-09-20T00:00Z"}, deadline_s=3600)  # no users
        make_celery(load_settings({"REDIS_URL": url})).send_task(tasks.PLAN, args=(job["id"],))
        job = wait_finished(client, job["id"], timeout=30)
    finally:
        redis_databases.give_back(url)
    assert job["status"] == "failed" and job["error"]["type"] == "internal_error", job
    assert "KeyError" in job["error"]["message"]


def test_a_worker_killed_mid_job_loses_nothing(stack, es, undisturbed) -> None:
    # last in this file: the PITs of the killed worker stay open until they expire
    # A short visibility timeout so the lost units come back within seconds. (Elsewhere it stays
    # above the longest unit, as in production: below it, a slow unit is run twice at once.)
    client, new_worker = stack(CELERY_VISIBILITY_TIMEOUT_S="4")
    es.faults.delay(0.05)  # slow pages, so the kill lands mid-job
    first = new_worker()
    job_id = submit(client)
    wait_until(lambda: client.get(f"/jobs/{job_id}").get_json()["progress"]["users_done"] >= 2, what="2 units done")
    os.killpg(first.proc.pid, signal.SIGKILL)  # the main process and its pool children, no goodbye
    first.proc.wait()
    mid = client.get(f"/jobs/{job_id}").get_json()
    assert mid["status"] == "running" and mid["progress"]["users_done"] < len(REQUEST["users"])
    new_worker()  # its units come back after the visibility timeout
    job = wait_finished(client, job_id, timeout=90)
    assert job["status"] == "succeeded", job
    assert sessions_of(client, job_id) == undisturbed


# --- leases and the reconciler: every unit runs, whatever dies ----------------------------------
# Short leases and passes so a test takes seconds; the broker's visibility timeout stays at two
# hours, as in production: only the leases can bring a lost unit back within these tests.
LEASED = {"UNIT_LEASE_S": "3", "RECONCILE_INTERVAL_S": "1", "CELERY_VISIBILITY_TIMEOUT_S": "7200"}


def test_a_worker_whose_main_process_dies_loses_nothing_within_the_lease(stack, es, undisturbed) -> None:
    client, new_worker = stack(**LEASED)
    es.faults.delay(0.05)
    doomed, survivor = new_worker(), new_worker()
    job_id = submit(client)
    wait_until(lambda: client.get(f"/jobs/{job_id}").get_json()["progress"]["users_done"] >= 2, what="2 units done")
    os.killpg(doomed.proc.pid, signal.SIGKILL)  # main process and pool: its units stay in `unacked`
    doomed.proc.wait()
    # within the test's wait, far below the visibility timeout (two hours): only a lease (3 s), a
    # reconciler lock's ttl if the dead worker led (3 s) and a pass (1 s) stand in between (the
    # time itself is measured by `python -m benchmarks recovery`, not asserted here)
    job = wait_finished(client, job_id, timeout=90)
    assert job["status"] == "succeeded", job
    assert survivor.proc.poll() is None  # the other worker, alive, ran the dead one's units
    assert sessions_of(client, job_id) == undisturbed
    svc = client.application.extensions["sessionizer"]
    assert int(svc.store.client.hget("sz:stats:reconcile", "units") or 0) >= 1  # the reconciler did it


def test_sigterm_hands_running_units_back_and_the_worker_exits(stack, es, undisturbed) -> None:
    client, new_worker = stack(**LEASED)
    es.faults.delay(0.3)  # long units: SIGTERM lands mid-unit
    first = new_worker()
    job_id = submit(client)
    svc = client.application.extensions["sessionizer"]
    leased = lambda: [v for v in svc.store.client.hvals(f"sz:job:{job_id}:leases") if b'"token":""' not in v]  # noqa: E731
    wait_until(lambda: len(leased()) >= 1, what="a unit running")
    first.proc.send_signal(signal.SIGTERM)
    first.proc.wait(30)  # without the hand-back it would run its slow unit to the end
    assert leased() == []  # every lease handed back: no unit waits for a lapse
    job = client.get(f"/jobs/{job_id}").get_json()
    assert job["status"] == "running", job  # not failed: the units were handed back
    assert svc.store.client.hlen("unacked") == 0 and svc.store.client.llen("celery") >= 1
    es.faults.reset()
    new_worker()
    job = wait_finished(client, job_id, timeout=90)
    assert job["status"] == "succeeded", job
    assert sessions_of(client, job_id) == undisturbed
    leases = [orjson.loads(v) for v in svc.store.client.hvals(f"sz:job:{job_id}:leases")]
    assert all(lease["lost"] == 0 for lease in leases)  # a clean stop is not a lost worker


def test_thousands_of_waiting_units_are_not_sent_again_and_none_is_lost(stack, es) -> None:
    from sessionizer.celery_app import make_celery
    from sessionizer.jobstore import JobStore
    from sessionizer.settings import load_settings
    from worker.reconcile import BrokerSnapshot, send_units

    client, new_worker = stack(**{**LEASED, "UNIT_LEASE_S": "1"})
    svc = client.application.extensions["sessionizer"]
    url = svc.settings.redis.url
    store = JobStore.from_url(url)
    n = 5000
    users = [f"nobody{i:04d}" for i in range(n)]
    job = store.create({**REQUEST, "users": users, "method": "gap"}, deadline_s=3600)
    units = [(i, [u]) for i, u in enumerate(users)]
    assert store.start(job["id"], n, [[u] for u in users])
    send_units(make_celery(load_settings(overrides={"REDIS_URL": url})), job["id"], units)
    es.faults.delay(0.02)
    worker = new_worker(concurrency=1)  # one slow worker: the queue stays thousands long
    wait_until(
        lambda: int(store.client.hget("sz:stats:reconcile", "passes") or 0) >= 5,
        timeout=120,
        what="five reconciling passes",
    )
    worker.stop()
    assert int(store.client.hget("sz:stats:reconcile", "units") or 0) == 0  # nothing sent twice
    snap = BrokerSnapshot.read(store.client, "celery")
    queued = [k for k in (BrokerSnapshot.read(store.client, "celery").queued)]
    raw_count = store.client.llen("celery")
    done = store.done_units(job["id"])
    assert raw_count == len(queued) == len(snap.queued)  # no unit twice in the queue
    assert len(done) >= 1 and {u for _, u in snap.queued} | set(done) == set(range(n))  # none lost
    assert not snap.queued & {(job["id"], u) for u in done}


def test_units_longer_than_their_lease_keep_it_and_run_once(stack, es, undisturbed) -> None:
    # a 1 s lease, units of several seconds (slow pages): the renewals keep every unit with its worker
    client, new_worker = stack(**{**LEASED, "UNIT_LEASE_S": "1"})
    es.faults.delay(0.4)
    new_worker()
    new_worker()
    job = wait_finished(client, submit(client, {**REQUEST, "users": REQUEST["users"][:6]}), timeout=120)
    assert job["status"] == "succeeded", job
    svc = client.application.extensions["sessionizer"]
    assert int(svc.store.client.hget("sz:stats:reconcile", "passes") or 0) >= 3
    assert int(svc.store.client.hget("sz:stats:reconcile", "units") or 0) == 0  # no lease ever lapsed
    assert sessions_of(client, job["id"]) == [s for s in undisturbed if s["user"] in REQUEST["users"][:6]]
