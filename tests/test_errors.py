"""The catch-all handlers: an unexpected error is one logged traceback with a request id and a
problem+json 500 that says nothing of it; an unreachable job store is a 503 to retry."""

from __future__ import annotations

import logging

import pytest

from devstack import free_port
from webapp import create_app


def test_an_unexpected_error_is_one_traceback_with_the_request_id(app, caplog: pytest.LogCaptureFixture) -> None:
    # The API has no route that fails on purpose: this test adds one to reach the handler.
    def boom() -> str:
        raise KeyError("sz:job:secret-internal-detail")

    app.add_url_rule("/boom-for-test", view_func=boom)
    with caplog.at_level(logging.ERROR):
        resp = app.test_client().get("/boom-for-test", headers={"X-Request-ID": "client-chosen-42"})
    assert resp.status_code == 500 and resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["request_id"] == "client-chosen-42" and resp.headers["X-Request-ID"] == "client-chosen-42"
    assert "client-chosen-42" in body["detail"] and "secret-internal-detail" not in resp.get_data(as_text=True)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "client-chosen-42" in tracebacks[0].getMessage()


def test_a_request_id_that_is_not_a_plain_token_is_replaced(client) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert given != "bad id\twith spaces" and len(given) == 32
    assert client.get("/healthz").headers["X-Request-ID"] != given  # one per request


def test_an_unreachable_job_store_is_503_to_retry(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app({"TESTING": True, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    store = app.extensions["sessionizer"].store
    store.client.connection_pool.connection_kwargs["retry"] = None  # no 20 s of retries against a closed port
    store.client.retry = None
    with caplog.at_level(logging.ERROR):
        resp = app.test_client().get("/jobs")
    assert resp.status_code == 503 and resp.mimetype == "application/problem+json"
    assert resp.headers["Retry-After"] == "5" and resp.get_json()["request_id"] == resp.headers["X-Request-ID"]
    assert not [r for r in caplog.records if r.exc_info]
