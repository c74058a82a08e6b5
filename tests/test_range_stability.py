"""Sessions are a property of the timeline, not of the query: end to end through a real worker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.workloads import EPOCH_MS, generate, write_ndjson
from tests.helpers import WorkerProcess, wait_finished, worker_env
from worker.core import label_sessions, method_params

pytestmark = pytest.mark.slow  # real Celery worker subprocesses

FAMILIES = ("heavy", "instances", "bot")
WEEK = timedelta(days=7)
T0 = datetime.fromtimestamp(EPOCH_MS / 1000, UTC)
INNER = (T0 + 7 * WEEK, T0 + 8 * WEEK)
WIDE = (T0 + 1 * WEEK, T0 + 14 * WEEK)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def timelines() -> dict[str, Any]:
    return {f: generate(f, weeks=15, seed=5, user=f"{f}-user") for f in FAMILIES}


@pytest.fixture(scope="module")
def workload_client(redis_databases, timelines, tmp_path_factory) -> Iterator[Any]:
    """A worker reading the workload timelines, on a database of this module's own."""
    from webapp import create_app

    tmp: Path = tmp_path_factory.mktemp("workloads")
    write_ndjson(tmp / "events.ndjson", timelines.values())
    url = redis_databases.take()
    env = worker_env(
        url, EVENT_SOURCE="file", EVENTS_PATH=str(tmp / "events.ndjson"), EVENT_STORE_DIR=str(tmp / "cache")
    )
    worker = WorkerProcess(env, tmp / "worker.log").start()
    yield create_app({"TESTING": True, "REDIS_URL": url}).test_client()
    worker.stop()
    redis_databases.give_back(url)


def run(client: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    resp = client.post("/jobs", json=body, headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.get_json()
    job = wait_finished(client, resp.get_json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    return client.get(f"/jobs/{job['id']}/sessions").get_json()["sessions"]


def inside(sessions: list[dict[str, Any]], lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    return [s for s in sessions if iso(lo) <= s["start"] and s["end"] <= iso(hi)]


@pytest.mark.parametrize(
    "method, params",
    [("hdbscan", {}), ("gap", {}), ("hdbscan", {"max_session_s": 1800}), ("gap", {"max_session_s": 3600})],
)
def test_a_week_inside_thirteen_weeks_gives_the_same_sessions(workload_client, method, params) -> None:
    users = [f"{f}-user" for f in FAMILIES]
    body = {"users": users, "method": method, "params": params}
    week = run(workload_client, {**body, "start": iso(INNER[0]), "end": iso(INNER[1])})
    wide = run(workload_client, {**body, "start": iso(WIDE[0]), "end": iso(WIDE[1])})
    in_week = inside(week, *INNER)
    assert len({s["user"] for s in in_week}) == len(FAMILIES)
    assert in_week == inside(wide, *INNER)  # split_reason included
    # with a maximum length, some sessions of the week were cut, the same way in both
    assert ("max_length" in {s["split_reason"] for s in in_week}) == bool(params)
    # the job returns every session overlapping the range, whole, and flags none of these as cut
    assert all(s["end"] >= iso(INNER[0]) and s["start"] <= iso(INNER[1]) for s in week)
    assert not any(s["truncated_start"] or s["truncated_end"] for s in in_week)


def test_group_by_instance_separates_parallel_sessions(workload_client, timelines) -> None:
    tl = timelines["instances"]
    body = {
        "users": [tl.user],
        "start": iso(INNER[0]),
        "end": iso(INNER[1]),
        "method": "gap",
        "group_by": ["user", "instance"],
    }
    sessions = run(workload_client, body)
    params = method_params("gap", {})
    lo, hi = int(INNER[0].timestamp() * 1000), int(INNER[1].timestamp() * 1000)
    expected = []
    for code, name in enumerate(tl.instance_names):
        t = tl.t_ms[tl.instance == code]
        labels = label_sessions(t, "gap", params)
        for k in range(labels.max() + 1 if len(labels) else 0):
            members = t[labels == k]
            if members[-1] >= lo and members[0] <= hi:
                expected.append((name, int(members[0]), int(members.size)))
    got = [(s["instance"], int(datetime.fromisoformat(s["start"]).timestamp() * 1000), s["events"]) for s in sessions]
    assert sorted(got, key=lambda g: (g[1], g[0])) == sorted(expected, key=lambda g: (g[1], g[0]))
    by_user = run(workload_client, {**body, "group_by": ["user"]})
    assert len(sessions) > len(by_user)  # stray events on other instances become sessions of their own
    assert np.unique(tl.instance).size > 1


def test_session_fields_hold_their_rules_and_ids_are_stable_across_ranges(workload_client, timelines) -> None:
    """session_id, screens, engaged and active_s on planted workloads: a week inside 8 weeks."""
    users = [f"{f}-user" for f in FAMILIES]
    # thresholds inside the planted families' spread (sessions of minutes to hours, tens to hundreds of events)
    params = {"engaged_min_s": 1800, "engaged_min_views": 150, "active_gap_s": 120}
    body = {"users": users, "method": "gap", "params": params}
    week = inside(run(workload_client, {**body, "start": iso(INNER[0]), "end": iso(INNER[1])}), *INNER)
    eight = run(workload_client, {**body, "start": iso(INNER[0] - 7 * WEEK), "end": iso(INNER[1])})
    assert week and {s["session_id"]: s for s in week} == {s["session_id"]: s for s in inside(eight, *INNER)}
    assert len({s["session_id"] for s in eight}) == len(eight)  # distinct sessions, distinct ids
    assert all(len(s["session_id"]) == 16 and int(s["session_id"], 16) >= 0 for s in eight)
    engaged = [s["duration_s"] >= 1800 or s["events"] >= 150 for s in eight]
    assert [s["engaged"] for s in eight] == engaged and 0 < sum(engaged) < len(eight)  # both kinds planted
    assert all(0 <= s["active_s"] <= s["duration_s"] for s in eight)
    assert any(s["active_s"] < s["duration_s"] for s in eight)  # some gaps above 120 s were left out
    assert all(1 <= s["screens"] <= s["events"] for s in eight)
    # the engaged rule's thresholds are the job's: other ones give other flags, the same ids
    other = run(workload_client, {**body, "params": {}, "start": iso(INNER[0]), "end": iso(INNER[1])})
    assert [s["session_id"] for s in inside(other, *INNER)] == [s["session_id"] for s in week]
    assert all(s["engaged"] for s in other) and not all(s["engaged"] for s in week)  # defaults: 10 s or 2 events
