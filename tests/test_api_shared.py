"""Shared results and ``Prefer: wait`` end to end, through a real Celery worker subprocess."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from tests.helpers import wait_finished

pytestmark = pytest.mark.slow  # real Celery worker subprocesses

# every test starts on an empty job store (worker_redis): the first submit here really scans
BODY = {
    "users": ["romain", "anes", "claire"],
    "start": "2022-09-22T00:00Z",
    "end": "2022-09-30T00:00Z",
    "method": "gap",
    "params": {"max_gap_s": 601},
}


def test_identical_requests_scan_once_and_each_gets_its_own_job(worker_client, worker_app) -> None:
    store = worker_app.extensions["sessionizer"].store
    before = store.scans_started()
    ids = [worker_client.post("/jobs", json={**BODY, "users": BODY["users"][::s]}).get_json()["id"] for s in (1, -1, 1)]
    assert len(set(ids)) == 3
    jobs = [wait_finished(worker_client, i) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    assert store.scans_started() == before + 1
    bodies = [worker_client.get(f"/jobs/{i}/sessions").get_json() for i in ids]
    assert bodies[0]["sessions"] and bodies[0]["sessions"] == bodies[1]["sessions"] == bodies[2]["sessions"]
    assert bodies[0]["stats"] == bodies[2]["stats"] and bodies[0]["stats"]["users"] == 3
    fresh = worker_client.post("/jobs", json=BODY, headers={"Cache-Control": "no-cache"}).get_json()
    assert wait_finished(worker_client, fresh["id"])["status"] == "succeeded"
    assert store.scans_started() == before + 2
    assert worker_client.get(f"/jobs/{fresh['id']}/sessions").get_json()["sessions"] == bodies[0]["sessions"]


def test_prefer_wait_returns_the_finished_job_and_formats_agree(worker_client) -> None:
    body = {**BODY, "params": {"max_gap_s": 602}}
    resp = worker_client.post(
        "/jobs", json=body, headers={"Prefer": "wait=60"}
    )  # generous: the job takes well under 1 s
    assert resp.status_code == 202 and resp.headers["Preference-Applied"] == "wait=60"
    job = resp.get_json()
    assert job["status"] == "succeeded" and "Retry-After" not in resp.headers
    sessions = worker_client.get(f"/jobs/{job['id']}/sessions").get_json()["sessions"]
    ndjson = worker_client.get(f"/jobs/{job['id']}/sessions", headers={"Accept": "application/x-ndjson"})
    assert [orjson.loads(line) for line in ndjson.data.splitlines()] == sessions
    rows = list(
        csv.DictReader(
            io.StringIO(
                worker_client.get(f"/jobs/{job['id']}/sessions", headers={"Accept": "text/csv"}).get_data(as_text=True)
            )
        )
    )
    assert [(r["user"], r["start"], int(r["events"])) for r in rows] == [
        (s["user"], s["start"], s["events"]) for s in sessions
    ]
    paged, cursor = [], None
    while True:
        page = worker_client.get(
            f"/jobs/{job['id']}/sessions?limit=5" + (f"&cursor={cursor}" if cursor else "")
        ).get_json()
        paged += page["sessions"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert paged == sessions
