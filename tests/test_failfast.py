"""While Redis is down or hung, the API under its real server answers instead of waiting on it:
``/healthz`` says Redis is unreachable, every ``/jobs`` route is a 503 problem+json with
``Retry-After``, and it recovers by itself when Redis is back.

How fast it answers (the issue asks 1 s for ``/healthz``, 2 s for the rest, where the store's
retries took 21 s) is measured by ``python -m benchmarks failfast``, not asserted here: the
client below only gives up, as a probe would, after ``PROBE_S``, far above both."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.liveserver import LiveServer, bearer

pytestmark = pytest.mark.slow  # a gunicorn subprocess


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path).start()
    yield server
    if server.redis.proc is not None:
        os.kill(server.redis.proc.pid, signal.SIGCONT)
    server.stop()


ROUTES = [
    ("GET", "/jobs"),
    ("POST", "/jobs"),
    ("GET", "/jobs/0b6a8f1e-1c3d-4e5f-8a9b-0c1d2e3f4a5b"),
    ("GET", "/jobs/0b6a8f1e-1c3d-4e5f-8a9b-0c1d2e3f4a5b/sessions"),
]
BODY = {"users": ["romain"], "start": "2022-09-20T00:00Z", "end": "2022-10-01T00:00Z"}


PROBE_S = 10.0  # a patient probe: a request still unanswered then was waiting on Redis


def request(client: httpx.Client, method: str, path: str) -> httpx.Response:
    body = BODY if method == "POST" else None
    return client.request(method, path, json=body, headers=bearer("alpha"), timeout=PROBE_S)


def assert_fails_fast(client: httpx.Client) -> None:
    for _ in range(2):  # again: no retries pile up behind the first
        resp = request(client, "GET", "/healthz")
        assert resp.status_code == 503 and resp.json()["redis"] == "unreachable"
        for method, path in ROUTES:
            resp = request(client, method, path)
            assert resp.status_code == 503, (method, path, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert int(resp.headers["Retry-After"]) > 0


def recovers(client: httpx.Client) -> None:
    deadline = time.monotonic() + 20
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, "the API did not recover once Redis was back"
        time.sleep(0.2)
    assert client.get("/jobs", headers=bearer("alpha")).status_code == 200


def test_redis_refusing_connections_gets_fast_503s_and_the_api_recovers(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base, timeout=30) as client:
        assert client.get("/jobs", headers=bearer("alpha")).status_code == 200  # pooled connections now exist
        live.redis.stop()
        assert_fails_fast(client)
        live.redis.start()  # same port, same data
        recovers(client)


def test_redis_that_accepts_but_never_answers_gets_fast_503s_and_the_api_recovers(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base, timeout=30) as client:
        assert client.get("/jobs", headers=bearer("alpha")).status_code == 200
        os.kill(live.redis.proc.pid, signal.SIGSTOP)  # the kernel still accepts its connections
        try:
            assert_fails_fast(client)
        finally:
            os.kill(live.redis.proc.pid, signal.SIGCONT)
        recovers(client)
