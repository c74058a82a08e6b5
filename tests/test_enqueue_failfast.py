"""The API's enqueue while the broker's Redis is stopped (``SIGSTOP``: the kernel still accepts its
connections, nothing ever answers): the submit gets a 503 problem, and the job it recorded says
why it failed. Without the broker connection's socket timeouts (``make_celery(fail_fast=True)``)
the send would wait forever; a guard thread turns such a hang into a failure, not a stuck run.

The job store stays on the test's own, live Redis: only the broker is stopped, so this is the
enqueue's path, not the store's (tests/test_failfast.py stops the one Redis behind both)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from devstack import start_redis
from sessionizer.jobstore import JobStore

BODY = {"users": ["romain"], "start": "2022-09-20T00:00Z", "end": "2022-10-01T00:00Z"}
HANG = 120  # seconds: far beyond any answer; reaching it means the request hung


@pytest.fixture
def stopped_broker(tmp_path: Path) -> Iterator[str]:
    """The URL of a real redis-server that is stopped, and continued and stopped after the test."""
    server = start_redis(tmp_path / "broker")
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield server.url
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def answer_of(call: Any) -> Any:
    """``call()``'s result, from a thread: a call that hangs fails the test rather than the run."""
    out: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: out.setdefault("value", call()), daemon=True)
    runner.start()
    runner.join(HANG)
    assert not runner.is_alive(), "the submit hung on the stopped broker"
    return out["value"]


def test_a_stopped_broker_gets_a_503_problem_and_the_job_says_why(app: Flask, stopped_broker: str) -> None:
    celery = app.extensions["sessionizer"].celery  # as the API built it; only its broker moves
    celery.conf.broker_url = stopped_broker
    client = app.test_client()
    resp = answer_of(lambda: client.post("/jobs", json=BODY))
    assert resp.status_code == 503, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert int(resp.headers["Retry-After"]) > 0
    assert "task queue" in resp.json["detail"]
    store: JobStore = app.extensions["sessionizer"].store
    page = store.list_jobs("", limit=5)
    assert [(j.status, j.error and j.error.type) for j in page.jobs] == [("failed", "enqueue_failed")]
