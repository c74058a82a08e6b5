"""End to end: API -> Redis broker -> a real Celery worker subprocess -> job store -> polling."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pytest

from tests.helpers import planted_documents, wait_finished
from worker.core import label_sessions, method_params
from worker.sources.timestamps import timestamp_ms

pytestmark = pytest.mark.slow  # real Celery worker subprocesses

RANGE = {"start": "2022-09-22T00:00Z", "end": "2022-09-30T00:00Z"}


def reference_sessions(user: str, method: str, params: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(start_ms, end_ms, events) of a user's sessions, computed directly with the core."""
    t = np.array(
        sorted(
            timestamp_ms(d["@timestamp"])
            for d in planted_documents()
            if d["util"] == user and isinstance(d["ecran"], str) and timestamp_ms(d["@timestamp"]) is not None
        ),
        dtype=np.int64,
    )
    labels = label_sessions(t, method, method_params(method, params))
    out = []
    for k in range(labels.max() + 1 if len(labels) else 0):
        members = t[labels == k]
        out.append((int(members.min()), int(members.max()), int(members.size)))
    return out


def as_ms(iso: str) -> int:
    return timestamp_ms(iso)


def test_seed_body_runs_to_sessions(worker_client) -> None:
    resp = worker_client.post(
        "/jobs",
        json={"utils": ["romain", "anes"], "date_min": "2022-09-22 00:00Z", "date_max": "2022-09-30T02:00+02:00"},
    )
    assert resp.status_code == 202
    job = wait_finished(worker_client, resp.get_json()["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"]["users_done"] == 2 and job["progress"]["events_scanned"] >= 160
    assert job["started_at"] and job["finished_at"] and job["error"] is None
    body = worker_client.get(f"/jobs/{job['id']}/sessions").get_json()
    sessions = body["sessions"]
    assert sessions == sorted(sessions, key=lambda s: (s["user"], s["start"]))
    expected = {u: reference_sessions(u, "hdbscan", {"min_cluster_size": 5}) for u in ("anes", "romain")}
    for user in ("anes", "romain"):
        got = [(as_ms(s["start"]), as_ms(s["end"]), s["events"]) for s in sessions if s["user"] == user]
        assert got == expected[user]
        # planted sessions are a day apart: no session may straddle two of them
        assert all(end - start < 3_600_000 for start, end, _ in got)
    first = sessions[0]
    assert first["start"].endswith("Z") and first["duration_s"] == (as_ms(first["end"]) - as_ms(first["start"])) / 1000
    screen_at = {
        (d["util"], timestamp_ms(d["@timestamp"])): d for d in planted_documents() if isinstance(d["ecran"], str)
    }
    for s in sessions:
        assert s["entry_screen"] == screen_at[(s["user"], as_ms(s["start"]))]["ecran"]
        assert s["exit_screen"] == screen_at[(s["user"], as_ms(s["end"]))]["ecran"]
        assert (
            s["instance"] == screen_at[(s["user"], as_ms(s["start"]))]["instance"]
        )  # one instance per planted session
        assert s["split_reason"] == "idle_gap"  # the next planted session is a day later
    clustered = sum(n for ref in expected.values() for _, _, n in ref)
    # one malformed document each for romain and anes; nobody-asked's is not ours to count
    durations = sorted(s["duration_s"] for s in sessions)
    engaged = [s["duration_s"] >= 10 or s["events"] >= 2 for s in sessions]  # the default thresholds
    assert [s["engaged"] for s in sessions] == engaged
    per_user = [len(v) for v in expected.values()]
    assert body["stats"] == {
        "users": 2,
        "events": 160,
        "invalid_events": 2,
        "noise_events": 160 - clustered,
        "sessions": sum(map(len, expected.values())),
        "engaged_sessions": sum(engaged),
        "bounce_rate": round(1 - sum(engaged) / len(sessions), 6),
        "median_duration_s": pytest.approx(float(np.median(durations))),
        "p90_duration_s": pytest.approx(float(np.quantile(durations, 0.9))),
        "sessions_per_user_median": float(np.median(per_user)),
    }


def test_gap_method_and_tiny_users(worker_client) -> None:
    resp = worker_client.post(
        "/jobs",
        json={"users": ["claire", "solo", "rare", "ghost"], **RANGE, "method": "gap", "params": {"max_gap_s": 600}},
    )
    job = wait_finished(worker_client, resp.get_json()["id"])
    assert job["status"] == "succeeded", job
    body = worker_client.get(f"/jobs/{job['id']}/sessions").get_json()
    by_user: dict[str, list] = {}
    for s in body["sessions"]:
        by_user.setdefault(s["user"], []).append(s)
    assert set(by_user) == {"claire", "solo", "rare"}  # ghost has no events: no session, no error
    assert len(by_user["claire"]) == 4 and all(s["events"] == 20 for s in by_user["claire"])
    assert by_user["solo"][0]["events"] == 1 and by_user["solo"][0]["duration_s"] == 0
    assert by_user["rare"][0]["entry_screen"] == "01"  # a string stays a string
    assert body["stats"]["users"] == 3 and body["stats"]["noise_events"] == 0


def test_hdbscan_on_users_with_too_few_events_is_noise_not_a_crash(worker_client) -> None:
    resp = worker_client.post("/jobs", json={"users": ["solo", "rare"], **RANGE})
    job = wait_finished(worker_client, resp.get_json()["id"])
    assert job["status"] == "succeeded", job
    body = worker_client.get(f"/jobs/{job['id']}/sessions").get_json()
    assert body["sessions"] == []
    assert body["stats"]["noise_events"] == 4 and body["stats"]["events"] == 4


def test_range_filters_events(worker_client) -> None:
    # only the second of romain's sessions lies in this range
    resp = worker_client.post(
        "/jobs", json={"users": ["romain"], "start": "2022-09-23T10:00Z", "end": "2022-09-23T12:00Z", "method": "gap"}
    )
    job = wait_finished(worker_client, resp.get_json()["id"])
    sessions = worker_client.get(f"/jobs/{job['id']}/sessions").get_json()["sessions"]
    assert [(s["start"], s["events"]) for s in sessions] == [("2022-09-23T11:00:00Z", 20)]


def test_job_keys_expire(worker_client, worker_redis) -> None:
    resp = worker_client.post("/jobs", json={"users": ["romain"], **RANGE, "method": "gap"})
    job = wait_finished(worker_client, resp.get_json()["id"])
    keys = worker_redis.keys(f"sz:job:{job['id']}*")
    assert len(keys) >= 4
    ttls = [worker_redis.ttl(k) for k in keys]
    assert all(0 < ttl <= 86_400 for ttl in ttls), ttls


def test_max_session_s_and_split_reason_in_every_format(worker_client) -> None:
    """claire's four planted sessions (20 events, about ten minutes each, a day apart) cut every two minutes."""
    params = {"max_session_s": 120}
    resp = worker_client.post("/jobs", json={"users": ["claire"], **RANGE, "method": "gap", "params": params})
    job = wait_finished(worker_client, resp.get_json()["id"])
    assert job["status"] == "succeeded", job
    assert job["request"]["params"]["max_session_s"] == 120
    sessions = worker_client.get(f"/jobs/{job['id']}/sessions").get_json()["sessions"]
    got = [(as_ms(s["start"]), as_ms(s["end"]), s["events"]) for s in sessions]
    assert got == reference_sessions("claire", "gap", params) and len(got) > 8
    assert all(end - start <= 120_000 for start, end, _ in got)
    # a piece ends at the maximum length when the next piece of its session follows within max_gap_s
    follows = [nxt[0] - cur[1] <= 1_800_000 for cur, nxt in zip(got, got[1:])] + [False]
    reasons = [s["split_reason"] for s in sessions]
    assert reasons == ["max_length" if f else "idle_gap" for f in follows] and reasons.count("idle_gap") == 4
    ndjson = worker_client.get(f"/jobs/{job['id']}/sessions", headers={"Accept": "application/x-ndjson"})
    assert [json.loads(line) for line in ndjson.data.splitlines()] == sessions
    text = worker_client.get(f"/jobs/{job['id']}/sessions", headers={"Accept": "text/csv"}).get_data(as_text=True)
    assert [row["split_reason"] for row in csv.DictReader(io.StringIO(text))] == reasons


def test_events_scanned_counts_the_requested_users_documents_only(worker_client, worker_redis) -> None:
    """1,000 users asked, 2 of whom exist: the job counts their documents in its read window
    (refused ones included), not the file's lines; a second run takes them all from the store."""
    from worker.jobs import read_window

    users = ["romain", "anes"] + [f"ghost{i:03d}" for i in range(998)]
    body = {"users": users, **RANGE, "method": "gap"}
    first = wait_finished(worker_client, worker_client.post("/jobs", json=body).get_json()["id"])
    assert first["status"] == "succeeded", first
    _, lo, hi = read_window(first["request"])
    mine = [d for d in planted_documents() if d["util"] in ("romain", "anes")]
    valid = [d for d in mine if isinstance(d["ecran"], str) and timestamp_ms(d["@timestamp"]) is not None]
    expected = sum(1 for d in valid if lo <= timestamp_ms(d["@timestamp"]) <= hi) + len(mine) - len(valid)
    assert first["progress"]["events_scanned"] == expected
    assert first["progress"]["events_from_source"] in (0, expected)  # 0 when an earlier test built the store
    # 1,000 users are not 1,000 tasks: a few units, kept with the job, covering every user once
    units = json.loads(worker_redis.hget(f"sz:job:{first['id']}", "units"))
    assert len(units) <= 64 and sorted(u for unit in units for u in unit) == sorted(users)
    again = worker_client.post("/jobs", json=body, headers={"Cache-Control": "no-cache"}).get_json()
    again = wait_finished(worker_client, again["id"])
    assert again["progress"]["events_scanned"] == expected and again["progress"]["events_from_source"] == 0
    sessions = [worker_client.get(f"/jobs/{j['id']}/sessions").get_json()["sessions"] for j in (first, again)]
    assert sessions[0] == sessions[1] and sessions[0]
