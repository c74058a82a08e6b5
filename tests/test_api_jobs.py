"""The job API's additions, against a real Redis no worker consumes: listing, delete, idempotent
submit, shared results, ``Prefer: wait``, paged / NDJSON / CSV sessions, limits.

Where a job must finish, the test plays the worker's part through the same job store calls the
worker makes (start, complete_unit, finish).
"""

from __future__ import annotations

import csv
import io
import time

import orjson
import pytest

from sessionizer.analytics import job_stats
from sessionizer.jobstore import JobStore
from tests.helpers import FUTURE, PAST, NewTasks, assert_problem, play_worker, session, unique

KEYS = {f"k{i}": f"test-key-{i}-0123456789abcdef" for i in range(10)}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def make_app(redis_url: str, **config):
    from webapp import create_app
    from webapp.auth import digest

    keys = ",".join(f"{n}:{digest(k)}" for n, k in KEYS.items())
    return create_app({"TESTING": True, "REDIS_URL": redis_url, "API_KEYS": keys, "MAX_WAIT_S": 1, **config})


@pytest.fixture
def app(redis_url, events_file):
    # the shared-results tests follow one computation from several keys (the deployment opt-in),
    # on a file source the API can identify (sessionizer/datasource.py)
    return make_app(redis_url, SHARE_RESULTS_ACROSS_KEYS=True, EVENTS_PATH=str(events_file))


@pytest.fixture
def store(app) -> JobStore:
    return app.extensions["sessionizer"].store


@pytest.fixture
def queued(store):
    return NewTasks(store.client)


# --- listing ---------------------------------------------------------------------------------------
def test_list_is_newest_first_cursor_paged_and_filtered(client, store) -> None:
    h = auth("k1")
    ids = [client.post("/jobs", json=unique(FUTURE, f"list{i}"), headers=h).get_json()["id"] for i in range(5)]
    client.post(f"/jobs/{ids[1]}/cancel", headers=h)
    page = client.get("/jobs?limit=2", headers=h).get_json()
    assert [j["id"] for j in page["jobs"]] == [ids[4], ids[3]]
    assert page["jobs"][0]["links"]["self"] == f"/jobs/{ids[4]}" and "owner" not in page["jobs"][0]
    seen = [j["id"] for j in page["jobs"]]
    cursor = page["next_cursor"]
    while cursor:
        page = client.get(f"/jobs?limit=2&cursor={cursor}", headers=h).get_json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
    assert seen == ids[::-1]
    cancelled = client.get("/jobs?status=cancelled", headers=h).get_json()
    assert [j["id"] for j in cancelled["jobs"]] == [ids[1]] and cancelled["next_cursor"] is None
    queued_only = client.get("/jobs?status=queued&limit=100", headers=h).get_json()["jobs"]
    assert [j["id"] for j in queued_only] == [ids[4], ids[3], ids[2], ids[0]]
    assert client.get("/jobs", headers=auth("k2")).get_json() == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "status=pending", "cursor=%%%", "cursor=bm9wZQ"])
def test_list_refuses_bad_query_with_422(client, query) -> None:
    assert_problem(client.get(f"/jobs?{query}", headers=auth("k1")), 422)


# --- delete ----------------------------------------------------------------------------------------
def test_delete_cancels_then_forgets(client, store, queued) -> None:
    h = auth("k3")
    job = client.post("/jobs", json=unique(FUTURE, "del"), headers=h).get_json()
    resp = client.delete(f"/jobs/{job['id']}", headers=h)
    assert resp.status_code == 204 and resp.data == b""
    assert store.get(job["id"]) is None or store.status(job["id"]) == "cancelled"  # the worker sees it stop
    assert store.client.keys(f"sz:job:{job['id']}*") == []
    for resp in (
        client.get(f"/jobs/{job['id']}", headers=h),
        client.get(f"/jobs/{job['id']}/sessions", headers=h),
        client.post(f"/jobs/{job['id']}/cancel", headers=h),
        client.delete(f"/jobs/{job['id']}", headers=h),
    ):
        assert_problem(resp, 404)
    assert job["id"] not in [j["id"] for j in client.get("/jobs", headers=h).get_json()["jobs"]]


def test_delete_of_a_finished_job_removes_its_results(client, store) -> None:
    job = client.post("/jobs", json=unique(PAST, "delfin"), headers=auth("k3")).get_json()
    play_worker(store, job["id"], [[session("anes", 1)]])
    assert client.get(f"/jobs/{job['id']}/sessions", headers=auth("k3")).status_code == 200
    assert client.delete(f"/jobs/{job['id']}", headers=auth("k3")).status_code == 204
    assert_problem(client.get(f"/jobs/{job['id']}/sessions", headers=auth("k3")), 404)
    assert store.client.keys(f"sz:job:{job['id']}*") == []


# --- idempotent submit -----------------------------------------------------------------------------
def test_idempotency_key_replays_the_original_job(client, queued) -> None:
    body = unique(FUTURE, "idem")
    h = {**auth("k4"), "Idempotency-Key": "order-42"}
    first = client.post("/jobs", json=body, headers=h)
    again = client.post("/jobs", json={**body, "users": body["users"][::-1][::-1]}, headers=h)
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"] and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert queued == [("sessionizer.plan", [first.get_json()["id"]])]  # planned once
    other = client.post("/jobs", json=body, headers={**auth("k4"), "Idempotency-Key": "order-43"})
    assert other.get_json()["id"] != first.get_json()["id"]


def test_idempotency_key_with_another_body_is_422(client, queued) -> None:
    h = {**auth("k4"), "Idempotency-Key": "order-44"}
    body = unique(FUTURE, "idem2")
    assert client.post("/jobs", json=body, headers=h).status_code == 202
    problem = assert_problem(client.post("/jobs", json={**body, "method": "hdbscan"}, headers=h), 422)
    assert "Idempotency-Key" in problem["errors"]
    assert len(queued.new()) == 1


def test_idempotency_key_while_the_first_is_being_created_is_409(client, store, queued) -> None:
    from webapp.jobs.submit import request_digest

    body = unique(FUTURE, "idem3")
    with client.application.test_request_context():
        from webapp.jobs.schemas import JobArgsSchema

        digest = request_digest(JobArgsSchema().load(body))
    # the first request has reserved the key and is still creating its job
    assert store.idempotency.reserve("k4", "order-45", digest) == ("new", None)
    resp = client.post("/jobs", json=body, headers={**auth("k4"), "Idempotency-Key": "order-45"})
    assert_problem(resp, 409)
    assert resp.headers["Retry-After"] == "1" and queued == []


def test_idempotency_key_is_freed_when_the_submit_fails(client, store) -> None:
    h = {**auth("k4"), "Idempotency-Key": "order-46"}
    assert_problem(client.post("/jobs", json={**FUTURE, "users": []}, headers=h), 422)
    assert store.client.get("sz:idem:k4:" + __import__("hashlib").sha256(b"order-46").hexdigest()) is None
    assert client.post("/jobs", json=unique(FUTURE, "idem4"), headers=h).status_code == 202


def test_idempotency_key_expires_with_its_job(client, store) -> None:
    h = {**auth("k4"), "Idempotency-Key": "order-47"}
    job = client.post("/jobs", json=unique(FUTURE, "idem5"), headers=h).get_json()
    ttls = [store.client.ttl(k) for k in store.client.keys("sz:idem:k4:*")]
    assert ttls and all(0 < t <= store.ttl_s for t in ttls)
    assert client.delete(f"/jobs/{job['id']}", headers=auth("k4")).status_code == 204
    again = client.post("/jobs", json=unique(FUTURE, "idem6"), headers=h)  # a deleted job frees its key
    assert again.status_code == 202 and again.get_json()["id"] != job["id"]


# --- shared results --------------------------------------------------------------------------------
def test_identical_past_requests_share_one_computation(client, store, queued) -> None:
    body = unique(PAST, "share")
    first = client.post("/jobs", json=body, headers=auth("k5")).get_json()
    # same request: another key, users in another order, aliases, offsets: one computation
    seed_style = {
        "utils": body["users"][::-1],
        "date_min": "2022-09-22T13:00+02:00",
        "date_max": PAST["end"],
        "method": "gap",
    }
    second = client.post("/jobs", json=seed_style, headers=auth("k6")).get_json()
    assert second["id"] != first["id"] and second["status"] == "queued"
    assert queued == [("sessionizer.plan", [first["id"]])]
    assert store.view(second["id"])["computation"] == first["id"]
    assert (first["shared"], second["shared"]) == (False, True)
    scans = store.scans_started()
    play_worker(store, first["id"], [[session("anes", 1)], [session("romain", 2)]])
    assert store.scans_started() == scans + 1
    got = client.get(f"/jobs/{second['id']}", headers=auth("k6")).get_json()
    assert got["status"] == "succeeded" and got["progress"]["users_done"] == 2
    assert got["request"]["users"] == body["users"][::-1]  # each job keeps its own request
    a = client.get(f"/jobs/{first['id']}/sessions", headers=auth("k5")).get_json()
    b = client.get(f"/jobs/{second['id']}/sessions", headers=auth("k6")).get_json()
    assert a["sessions"] == b["sessions"] == [session("anes", 1), session("romain", 2)] and b["job_id"] == second["id"]
    # a kept result is reused at once; no-cache runs afresh
    third = client.post("/jobs", json=body, headers=auth("k5")).get_json()
    assert third["status"] == "succeeded" and len(queued.new()) == 1
    fresh = client.post("/jobs", json=body, headers={**auth("k5"), "Cache-Control": "no-cache"}).get_json()
    assert fresh["status"] == "queued" and queued.new()[-1] == ("sessionizer.plan", [fresh["id"]])
    # the shared computation lives as long as the jobs following it
    assert store.client.ttl(f"sz:job:{first['id']}:sessions") >= store.client.ttl(f"sz:job:{third['id']}") - 1


def test_results_are_shared_across_keys_only_when_the_deployment_opts_in(redis_url, events_file, queued) -> None:
    client = make_app(
        redis_url, EVENTS_PATH=str(events_file)
    ).test_client()  # the default: SHARE_RESULTS_ACROSS_KEYS off
    body = unique(PAST, "perkey")
    a = client.post("/jobs", json=body, headers=auth("k5")).get_json()
    b = client.post("/jobs", json=body, headers=auth("k6")).get_json()
    same_key = client.post("/jobs", json=body, headers=auth("k5")).get_json()
    assert queued.new() == [("sessionizer.plan", [a["id"]]), ("sessionizer.plan", [b["id"]])]  # k6 scans its own
    store = client.application.extensions["sessionizer"].store
    assert store.view(same_key["id"])["computation"] == a["id"]  # within one key, shared as before


def test_a_job_following_another_keys_computation_shows_only_its_own_times(client, store, queued) -> None:
    body = unique(PAST, "times")
    first = client.post("/jobs", json=body, headers=auth("k5")).get_json()
    play_worker(store, first["id"], [[session("anes", 1)]])
    done = client.get(f"/jobs/{first['id']}", headers=auth("k5")).get_json()
    second = client.post("/jobs", json=body, headers=auth("k6")).get_json()
    assert second["status"] == "succeeded" and store.view(second["id"])["computation"] == first["id"]
    for name in ("started_at", "finished_at", "deadline_at"):
        assert second[name] != done[name], name  # nothing of the other key's job shows
    assert second["started_at"] == second["finished_at"] == second["submitted_at"]
    assert second["deadline_at"] > second["submitted_at"]


def test_ranges_not_fully_past_and_other_parameters_are_not_shared(client, queued) -> None:
    body = unique(FUTURE, "noshare")
    ids = [
        client.post("/jobs", json=b, headers=auth("k5")).get_json()["id"]
        for b in (body, body, {**unique(PAST, "p"), "params": {"max_gap_s": 60}})
    ]
    assert [m for _, [m] in queued.new()] == ids


def test_unsettled_ranges_and_unidentified_data_are_not_shared(redis_url, events_file, tmp_path) -> None:
    # PAST ended in 2022: with a settle time of 20 years, what it reads has not settled yet
    for config in (
        {"EVENTS_PATH": str(events_file), "SHARE_SETTLE_S": 20 * 366 * 86400},
        {"EVENTS_PATH": str(tmp_path / "not-here.ndjson")},
    ):  # files the API cannot see
        client = make_app(redis_url, **config).test_client()
        queued = NewTasks(client.application.extensions["sessionizer"].store.client)
        body = unique(PAST, "unsettled")
        jobs = [client.post("/jobs", json=body, headers=auth("k5")).get_json() for _ in range(2)]
        assert [m for _, [m] in queued.new()] == [j["id"] for j in jobs]
        assert [j["shared"] for j in jobs] == [False, False]


def test_cancelling_a_shared_job_never_cancels_the_others(client, store, queued) -> None:
    body = unique(PAST, "sharecancel")
    a = client.post("/jobs", json=body, headers=auth("k5")).get_json()
    b = client.post("/jobs", json=body, headers=auth("k6")).get_json()
    c = client.post("/jobs", json=body, headers=auth("k7")).get_json()
    assert client.post(f"/jobs/{a['id']}/cancel", headers=auth("k5")).get_json()["status"] == "cancelled"
    assert store.status(a["id"]) == "queued"  # the computation goes on for b and c
    assert client.delete(f"/jobs/{b['id']}", headers=auth("k6")).status_code == 204
    assert client.get(f"/jobs/{c['id']}", headers=auth("k7")).get_json()["status"] == "queued"
    play_worker(store, a["id"], [[session("x", 3)]])
    assert client.get(f"/jobs/{c['id']}/sessions", headers=auth("k7")).get_json()["sessions"] == [session("x", 3)]
    assert client.get(f"/jobs/{a['id']}", headers=auth("k5")).get_json()["status"] == "cancelled"
    assert_problem(client.get(f"/jobs/{b['id']}", headers=auth("k6")), 404)


def test_the_last_job_following_a_computation_cancels_it_and_deleting_frees_it(client, store) -> None:
    body = unique(PAST, "sharelast")
    a = client.post("/jobs", json=body, headers=auth("k5")).get_json()
    b = client.post("/jobs", json=body, headers=auth("k6")).get_json()
    assert client.delete(f"/jobs/{a['id']}", headers=auth("k5")).status_code == 204
    assert store.status(a["id"]) == "queued"  # b still follows it: kept, but a is gone for its client
    assert_problem(client.get(f"/jobs/{a['id']}", headers=auth("k5")), 404)
    client.post(f"/jobs/{b['id']}/cancel", headers=auth("k6"))
    assert store.status(a["id"]) == "cancelled"  # nobody follows it any more: the worker stops
    after = client.post("/jobs", json=body, headers=auth("k5")).get_json()  # a cancelled one is not reused
    assert store.view(after["id"])["computation"] == after["id"]
    assert client.delete(f"/jobs/{b['id']}", headers=auth("k6")).status_code == 204
    assert store.client.keys(f"sz:job:{a['id']}*") == [] and store.client.keys(f"sz:job:{b['id']}*") == []


# --- Prefer: wait ----------------------------------------------------------------------------------
def test_without_prefer_nothing_waits_and_nothing_is_applied(client) -> None:
    resp = client.post("/jobs", json=unique(FUTURE, "nowait"), headers=auth("k8"))
    assert resp.status_code == 202 and "Preference-Applied" not in resp.headers
    polled = client.get(resp.headers["Location"], headers={**auth("k8"), "Prefer": "respond-async"})
    assert polled.status_code == 200 and "Preference-Applied" not in polled.headers


def test_prefer_wait_holds_until_the_time_is_up(client) -> None:
    # MAX_WAIT_S is 1 here: wait=30 is honoured as wait=1, and the job stays queued (no worker)
    started = time.monotonic()
    resp = client.post("/jobs", json=unique(FUTURE, "wait"), headers={**auth("k8"), "Prefer": "wait=30"})
    assert resp.status_code == 202 and resp.headers["Preference-Applied"] == "wait=1"
    assert time.monotonic() - started >= 1.0 and resp.get_json()["status"] == "queued"
    started = time.monotonic()
    polled = client.get(resp.headers["Location"], headers={**auth("k8"), "Prefer": "handling=lenient, wait=1"})
    assert polled.headers["Preference-Applied"] == "wait=1" and time.monotonic() - started >= 1.0


def test_prefer_wait_answers_as_soon_as_the_job_finishes(client, store) -> None:
    import threading

    job = client.post("/jobs", json=unique(PAST, "waitdone"), headers=auth("k8")).get_json()
    threading.Timer(0.3, play_worker, args=(store, job["id"], [[]])).start()
    resp = client.get(f"/jobs/{job['id']}", headers={**auth("k8"), "Prefer": "wait=1"})
    assert resp.get_json()["status"] == "succeeded" and resp.headers["Preference-Applied"] == "wait=1"
    assert "Retry-After" not in resp.headers
    done = client.get(f"/jobs/{job['id']}", headers={**auth("k8"), "Prefer": "wait=1"})
    assert done.get_json()["status"] == "succeeded"  # a finished job is answered without waiting


# --- sessions: pages, user filter, formats ---------------------------------------------------------
@pytest.fixture
def finished(client, store):
    job = client.post("/jobs", json=unique(PAST, "pages"), headers=auth("k9")).get_json()
    units = [[session("anes", k) for k in range(3)], [], [session("romain", k) for k in range(4)], [session("solo", 9)]]
    play_worker(store, job["id"], units)
    return job["id"], [s for u in units for s in u]


def test_sessions_page_through_with_a_cursor(client, finished) -> None:
    job_id, everything = finished
    full = client.get(f"/jobs/{job_id}/sessions", headers=auth("k9")).get_json()
    assert (
        full["sessions"] == everything
        and full["next_cursor"] is None
        and full["stats"] == {"sessions": 8, **job_stats([orjson.dumps(everything)])}
    )
    for limit in (1, 2, 3, 7, 8):
        got, cursor, pages = [], None, 0
        while True:
            url = f"/jobs/{job_id}/sessions?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            resp = client.get(url, headers=auth("k9"))
            body = resp.get_json()
            assert len(body["sessions"]) <= limit
            got += body["sessions"]
            pages += 1
            cursor = body["next_cursor"]
            if not cursor:
                assert "Link" not in resp.headers
                break
            assert resp.headers["Link"] == f'</jobs/{job_id}/sessions?limit={limit}&cursor={cursor}>; rel="next"'
        assert got == everything and pages == -(-len(everything) // limit)


def test_sessions_of_one_user(client, finished) -> None:
    job_id, everything = finished
    romain = [s for s in everything if s["user"] == "romain"]
    assert client.get(f"/jobs/{job_id}/sessions?user=romain", headers=auth("k9")).get_json()["sessions"] == romain
    first = client.get(f"/jobs/{job_id}/sessions?user=romain&limit=3", headers=auth("k9")).get_json()
    rest = client.get(
        f"/jobs/{job_id}/sessions?user=romain&limit=3&cursor={first['next_cursor']}", headers=auth("k9")
    ).get_json()
    assert first["sessions"] + rest["sessions"] == romain and rest["next_cursor"] is None
    assert client.get(f"/jobs/{job_id}/sessions?user=ghost", headers=auth("k9")).get_json()["sessions"] == []


def test_every_sessions_answer_is_streamed(client, store, finished) -> None:
    job_id, everything = finished
    for query, accept in (
        ("", "application/json"),
        ("?user=romain", "application/json"),
        ("", "application/x-ndjson"),
        ("", "text/csv"),
    ):
        resp = client.get(f"/jobs/{job_id}/sessions{query}", headers={**auth("k9"), "Accept": accept})
        # streamed: sent as it is produced, so no length is known up front (a built body has one)
        assert resp.status_code == 200 and "Content-Length" not in resp.headers, (query, accept)
        assert resp.data  # read to the end (closes the stream)
    whole = client.get(f"/jobs/{job_id}/sessions", headers=auth("k9"))
    assert orjson.loads(whole.data) == {
        "job_id": job_id,
        "sessions": everything,
        "stats": {"sessions": 8, **job_stats([orjson.dumps(everything)])},
        "next_cursor": None,
    }
    # a result without any session is still one valid document
    empty = client.post("/jobs", json=unique(PAST, "empty"), headers=auth("k9")).get_json()
    play_worker(store, empty["id"], [[], []])
    assert orjson.loads(client.get(f"/jobs/{empty['id']}/sessions", headers=auth("k9")).data)["sessions"] == []


def test_sessions_as_ndjson_and_csv(client, finished) -> None:
    job_id, everything = finished
    resp = client.get(f"/jobs/{job_id}/sessions", headers={**auth("k9"), "Accept": "application/x-ndjson"})
    assert resp.mimetype == "application/x-ndjson" and resp.is_streamed
    assert [orjson.loads(line) for line in resp.data.splitlines()] == everything
    resp = client.get(f"/jobs/{job_id}/sessions?user=anes", headers={**auth("k9"), "Accept": "text/csv"})
    assert resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    anes = [s for s in everything if s["user"] == "anes"]
    assert [r["start"] for r in rows] == [s["start"] for s in anes]
    assert (
        rows[2]["truncated_end"] == "true" and rows[0]["truncated_start"] == "false" and rows[0]["duration_s"] == "30.0"
    )
    assert list(rows[0]) == [
        "user",
        "instance",
        "start",
        "end",
        "duration_s",
        "events",
        "entry_screen",
        "exit_screen",
        "truncated_start",
        "truncated_end",
        "split_reason",
        "session_id",
        "screens",
        "engaged",
        "active_s",
    ]
    assert [r["split_reason"] for r in rows] == [s["split_reason"] for s in anes]
    browser = client.get(f"/jobs/{job_id}/sessions", headers={**auth("k9"), "Accept": "text/html,*/*;q=0.8"})
    assert browser.mimetype == "application/json"  # JSON stays the default


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "cursor=abc", "cursor=MS4yLjM", "cursor=LTEuMg", "user="])
def test_sessions_refuse_bad_query_with_422(client, finished, query) -> None:
    assert_problem(client.get(f"/jobs/{finished[0]}/sessions?{query}", headers=auth("k9")), 422)


# --- limits ----------------------------------------------------------------------------------------
def test_rate_limit_is_per_key_and_says_when_to_retry(redis_url) -> None:
    limited = make_app(redis_url, RATE_LIMIT_PER_S=0.5, RATE_LIMIT_BURST=3).test_client()
    codes = [limited.get("/jobs", headers=auth("k1")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    resp = limited.get("/jobs", headers=auth("k1"))
    assert_problem(resp, 429)
    assert 1 <= int(resp.headers["Retry-After"]) <= 2
    assert limited.get("/jobs", headers=auth("k2")).status_code == 200  # another key has its own bucket
    # the bucket lives in Redis: a second API process sharing it is limited alike
    other = make_app(redis_url, RATE_LIMIT_PER_S=0.5, RATE_LIMIT_BURST=3).test_client()
    assert other.get("/jobs", headers=auth("k1")).status_code == 429


def test_concurrent_jobs_cap_per_key(redis_url) -> None:
    app = make_app(redis_url, MAX_ACTIVE_JOBS=2)
    capped = app.test_client()
    ids = [capped.post("/jobs", json=unique(FUTURE, f"cap{i}"), headers=auth("k3")).get_json()["id"] for i in range(2)]
    resp = capped.post("/jobs", json=unique(FUTURE, "cap2"), headers=auth("k3"))
    body = assert_problem(resp, 429)
    assert "2 jobs" in body["detail"] and int(resp.headers["Retry-After"]) >= 1
    assert capped.post("/jobs", json=unique(FUTURE, "cap3"), headers=auth("k4")).status_code == 202
    capped.post(f"/jobs/{ids[0]}/cancel", headers=auth("k3"))
    assert capped.post("/jobs", json=unique(FUTURE, "cap4"), headers=auth("k3")).status_code == 202


def test_openapi_documents_the_session_rules(client) -> None:
    from worker.core import SPLIT_REASONS  # the values the worker writes

    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    reason = schemas["Session"]["properties"]["split_reason"]
    assert reason["enum"] == list(SPLIT_REASONS) and all(f"`{r}`" in reason["description"] for r in SPLIT_REASONS)
    for name in ("HdbscanParams", "GapParams"):
        longest = schemas[name]["properties"]["max_session_s"]
        assert longest["nullable"] and longest["default"] is None and longest["minimum"] == 1
        assert "no limit" in longest["description"]


def test_openapi_documents_the_additions(client) -> None:
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    assert {"get", "post"} <= set(paths["/jobs"]) and "delete" in paths["/jobs/{job_id}"]
    params = {(p["in"], p["name"]) for p in paths["/jobs"]["post"]["parameters"]}
    assert {("header", "Idempotency-Key"), ("header", "Prefer"), ("header", "Cache-Control")} <= params
    assert {("query", "status"), ("query", "limit"), ("query", "cursor")} <= {
        (p["in"], p["name"]) for p in paths["/jobs"]["get"]["parameters"]
    }
    sessions = paths["/jobs/{job_id}/sessions"]["get"]
    assert {"limit", "cursor", "user"} <= {p["name"] for p in sessions["parameters"]}
    assert {"application/json", "application/x-ndjson", "text/csv"} <= set(sessions["responses"]["200"]["content"])
    for path, ops in paths.items():
        if path.startswith("/jobs"):
            for method, op in ops.items():
                if method == "parameters":
                    continue
                assert {"401", "429"} <= set(op["responses"]), (path, op["summary"])
                for code, resp in op["responses"].items():
                    if code[0] in "45":
                        assert list(resp["content"]) == ["application/problem+json"], (path, code)
    assert "Preference-Applied" in paths["/jobs/{job_id}"]["get"]["responses"]["200"]["headers"]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
