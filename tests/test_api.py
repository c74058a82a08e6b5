"""The HTTP contract: validation, problem+json errors, job bodies, 404/409/415/400 (no worker needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import Queue, assert_problem

SEED_GOOD = {"utils": ["romain"], "date_min": "2022-09-22 11:00Z", "date_max": "2022-09-28T12:00+02:00"}
SEED_BAD = {"util": ["romain"], "date_min": "2022-09-22 11:00Z", "date_max": "2022-09-28 / 12:00+02:00"}
GOOD = {
    "users": ["romain", "anes"],
    "start": "2022-09-22T11:00Z",
    "end": "2022-09-28T12:00+02:00",
    "method": "hdbscan",
    "params": {"min_cluster_size": 5},
}


@pytest.fixture
def queued(redis_client):
    return Queue(redis_client)


def test_submit_returns_202_location_retry_after_and_the_job(client, queued) -> None:
    resp = client.post("/jobs", json=GOOD)
    assert resp.status_code == 202
    job = resp.get_json()
    assert resp.headers["Location"] == f"/jobs/{job['id']}"
    assert int(resp.headers["Retry-After"]) >= 1
    assert job["status"] == "queued"
    assert job["request"]["users"] == ["romain", "anes"]
    assert job["request"]["start"] == "2022-09-22T11:00:00Z"
    assert job["request"]["end"] == "2022-09-28T10:00:00Z"  # normalised to UTC
    assert job["request"]["params"]["min_cluster_size"] == 5
    assert job["progress"] == {"users_total": 2, "users_done": 0, "events_scanned": 0, "events_from_source": 0}
    assert job["error"] is None and job["started_at"] is None and job["finished_at"] is None
    assert job["links"] == {
        "self": f"/jobs/{job['id']}",
        "sessions": f"/jobs/{job['id']}/sessions",
        "cancel": f"/jobs/{job['id']}/cancel",
    }
    assert queued == [("sessionizer.plan", [job["id"]])]


def test_seed_body_is_accepted_through_aliases(client, queued) -> None:
    resp = client.post("/jobs", json=SEED_GOOD)
    assert resp.status_code == 202, resp.get_json()
    req = resp.get_json()["request"]
    assert req["users"] == ["romain"]
    assert (req["start"], req["end"]) == ("2022-09-22T11:00:00Z", "2022-09-28T10:00:00Z")
    assert req["method"] == "hdbscan" and req["group_by"] == ["user"]


def test_seed_bad_body_names_users_and_date_max(client, queued) -> None:
    body = assert_problem(client.post("/jobs", json=SEED_BAD), 422)
    errors = body["errors"]
    assert "utils" in errors["users"][0] and "Missing" in errors["users"][0]
    assert "date_max" in errors and "ISO-8601" in errors["date_max"][0]
    assert errors["util"] == ["Unknown field."]
    assert queued == []  # nothing enqueued for a refused job


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"users": []}, "users"),
        ({"users": ["a", "a"]}, "users"),
        ({"users": [""]}, "users"),
        ({"users": "romain"}, "users"),
        ({"users": [f"u{i}" for i in range(1001)]}, "users"),
        ({"end": "2022-09-22T11:00Z"}, "end"),
        ({"start": "2020-01-01T00:00Z", "end": "2021-01-02T00:00Z"}, "end"),
        ({"method": "kmeans"}, "method"),
        ({"params": {"min_cluster_size": 1}}, "params"),
        ({"params": {"min_cluster_size": "5"}}, "params"),
        ({"params": {"max_gap_s": 60}}, "params"),  # a gap parameter given to hdbscan
        ({"method": "gap", "params": {"max_gap_s": 0}}, "params"),
        ({"params": {"max_session_s": 0}}, "params"),
        ({"method": "gap", "params": {"max_session_s": "1h"}}, "params"),
        ({"group_by": ["instance"]}, "group_by"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_jobs_get_422_naming_the_field(client, queued, patch, field) -> None:
    body = assert_problem(client.post("/jobs", json={**GOOD, **patch}), 422)
    assert field in body["errors"], body
    assert queued == []


def test_alias_and_name_together_is_refused(client, queued) -> None:
    body = assert_problem(client.post("/jobs", json={**GOOD, "utils": ["x"]}), 422)
    assert "utils" in body["errors"]


def test_dates_without_offset_are_utc(client, queued) -> None:
    resp = client.post("/jobs", json={**GOOD, "start": "2022-09-22T11:00", "end": "2022-09-23"})
    assert resp.status_code == 202
    assert resp.get_json()["request"]["start"] == "2022-09-22T11:00:00Z"
    assert resp.get_json()["request"]["end"] == "2022-09-23T00:00:00Z"


def test_gap_method_gets_its_default(client, queued) -> None:
    resp = client.post("/jobs", json={**GOOD, "method": "gap", "params": {}})
    assert resp.status_code == 202
    assert resp.get_json()["request"]["params"]["max_gap_s"] == 1800


def test_malformed_json_is_400_and_other_types_415(client, queued) -> None:
    assert_problem(client.post("/jobs", data="{not json", content_type="application/json"), 400)
    assert_problem(client.post("/jobs", data="users=romain", content_type="application/x-www-form-urlencoded"), 415)
    assert_problem(client.post("/jobs", data="x"), 415)
    assert queued == []


def test_body_over_one_mebibyte_is_413(client, queued) -> None:
    big = '{"users": ["' + "x" * (1 << 20) + '"]}'
    assert_problem(client.post("/jobs", data=big, content_type="application/json"), 413)


def test_unknown_job_is_404_never_pending(client) -> None:
    import uuid

    body = assert_problem(client.get(f"/jobs/{uuid.uuid4()}"), 404)
    assert "never issued" in body["detail"]
    assert assert_problem(client.get("/jobs/00000000-0000-0000-0000-000000000000"), 404) == body  # not an id issued
    assert_problem(client.get("/jobs/nope/sessions"), 404)
    assert_problem(client.post("/jobs/nope/cancel"), 404)


def test_sessions_of_an_unfinished_job_is_409_with_retry_after(client, queued) -> None:
    job = client.post("/jobs", json=GOOD).get_json()
    resp = client.get(f"/jobs/{job['id']}")
    assert resp.get_json()["status"] == "queued" and "Retry-After" in resp.headers
    body = assert_problem(client.get(f"/jobs/{job['id']}/sessions"), 409)
    assert body["job_status"] == "queued"


def test_cancel_then_sessions_says_why(client, queued) -> None:
    job = client.post("/jobs", json=GOOD).get_json()
    resp = client.post(f"/jobs/{job['id']}/cancel")
    assert resp.status_code == 202 and resp.get_json()["status"] == "cancelled"
    polled = client.get(f"/jobs/{job['id']}")
    assert polled.get_json()["status"] == "cancelled" and "Retry-After" not in polled.headers
    body = assert_problem(client.get(f"/jobs/{job['id']}/sessions"), 409)
    assert body["job_status"] == "cancelled" and "cancelled" in body["detail"]


def test_broker_down_is_503_and_the_job_is_failed_not_left_queued(app, client) -> None:
    services = app.extensions["sessionizer"]
    original = services.celery
    from devstack import free_port
    from sessionizer.celery_app import make_celery

    # nothing listens there
    broken = make_celery(services.settings.replace(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    services.celery = broken
    try:
        # no-cache: a fresh computation, never one shared with an identical queued job
        resp = client.post("/jobs", json=GOOD, headers={"Cache-Control": "no-cache"})
    finally:
        services.celery = original
    body = assert_problem(resp, 503)
    assert "Retry-After" in resp.headers and "unavailable" in body["detail"]


def test_openapi_swagger_and_health(client) -> None:
    spec = client.get("/openapi.json").get_json()
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/sessions", "/jobs/{job_id}/cancel", "/healthz"} <= set(
        spec["paths"]
    )
    post = spec["paths"]["/jobs"]["post"]
    assert {"202", "400", "415", "422"} <= set(post["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and b"swagger" in docs.data.lower()
    with client.get("/docs/static/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200 and len(asset.data) > 100_000
    assert client.get("/healthz").get_json() == {"status": "ok", "redis": "ok"}


def test_the_api_process_imports_neither_the_worker_nor_the_heavy_libraries() -> None:
    # the module gunicorn loads (webapp.wsgi builds the app), in a process of its own
    code = (
        "import sys, webapp.wsgi;"
        "banned = ('worker', 'numpy', 'pandas', 'hdbscan', 'elasticsearch', 'sklearn', 'pyarrow');"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in banned)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_core_parameter_can_be_set_and_bad_ones_are_named(client, queued) -> None:
    params = {
        "min_cluster_size": 8,
        "min_samples": 3,
        "cluster_selection_epsilon_s": 600,
        "split_idle_s": 7200,
        "allow_single_cluster": False,
        "max_span_s": 3600,
        "max_session_s": 7200,
        "engaged_min_s": 30,
        "engaged_min_views": 3,
        "active_gap_s": 60,
    }
    resp = client.post("/jobs", json={**GOOD, "params": params})
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["request"]["params"] == params
    body = assert_problem(client.post("/jobs", json={**GOOD, "params": {"allow_single_cluster": "maybe"}}), 422)
    assert "allow_single_cluster" in body["errors"]["params"]


def test_poll_refuses_an_oversized_prefer_header_and_documents_it(client, queued) -> None:
    job = client.post("/jobs", json=GOOD).get_json()
    body = assert_problem(client.get(f"/jobs/{job['id']}", headers={"Prefer": "wait=1," + "x" * 300}), 422)
    assert "Prefer" in body["errors"]
    assert client.get(f"/jobs/{job['id']}", headers={"Prefer": "respond-async"}).status_code == 200
    params = client.get("/openapi.json").get_json()["paths"]["/jobs/{job_id}"]["get"]["parameters"]
    assert any(p["name"] == "Prefer" and p["in"] == "header" for p in params)
