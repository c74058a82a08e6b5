"""Readiness follows the workers' heartbeats: 503 with none alive, 200 with one, 503 once it stops."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack import ROOT, RedisServer, start_redis
from sessionizer.jobstore.liveness import KEY
from tests.helpers import WorkerProcess, worker_env

pytestmark = pytest.mark.slow  # real Celery worker subprocesses

TTL_S = 2.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of its own, to stop: on it no worker of the suite beats."""
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


def heartbeat_worker(redis_url: str, tmp_path: Path, name: str) -> WorkerProcess:
    env = worker_env(
        redis_url,
        EVENT_SOURCE="file",
        EVENTS_PATH=str(tmp_path / "none.ndjson"),
        WORKER_HEARTBEAT_INTERVAL_S="0.5",
        WORKER_HEARTBEAT_TTL_S=str(TTL_S),
    )
    return WorkerProcess(env, tmp_path / f"{name}.log", concurrency=1, name=name)


def readiness_until(client, status: int, timeout: float = 30.0) -> dict:
    """Poll /readyz until it answers ``status`` (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get("/readyz")
        if resp.status_code == status:
            return resp.get_json()
        assert time.monotonic() < deadline, f"/readyz still {resp.status_code}: {resp.get_json()}"
        time.sleep(0.1)


def liveness_check(name: str, env: dict[str, str]) -> int:
    """The worker's docker-compose healthcheck, as a command."""
    return subprocess.run(
        [sys.executable, "-m", "worker.heartbeat", name], cwd=ROOT, env=env, capture_output=True, timeout=30
    ).returncode


def test_ready_only_while_a_worker_beats(client, redis_url: str, tmp_path: Path) -> None:
    ready_client = client  # the API on this test's own database: no other worker beats there
    resp = ready_client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "unavailable", "redis": "ok", "broker": "ok", "workers": 0}

    worker = heartbeat_worker(redis_url, tmp_path, "ready").start()
    name = f"ready@{socket.gethostname()}"
    try:
        assert readiness_until(ready_client, 200) == {"status": "ready", "redis": "ok", "broker": "ok", "workers": 1}
        assert liveness_check(name, worker.env) == 0
        assert liveness_check(f"other@{socket.gethostname()}", worker.env) == 1
    finally:
        worker.stop()  # SIGTERM: a warm shutdown leaves the registry at once
    assert redis.Redis.from_url(redis_url).zscore(KEY, name) is None
    assert ready_client.get("/readyz").status_code == 503
    assert liveness_check(name, worker.env) == 1


def test_a_killed_worker_stops_counting_when_its_beat_expires(client, redis_url: str, tmp_path: Path) -> None:
    ready_client = client
    worker = heartbeat_worker(redis_url, tmp_path, "doomed").start()
    name = f"doomed@{socket.gethostname()}"
    try:
        readiness_until(ready_client, 200)
    finally:
        worker.stop(sig=9)  # SIGKILL: no clean leave, only the ttl tells
    assert redis.Redis.from_url(redis_url).zscore(KEY, name) is not None
    assert readiness_until(ready_client, 503, timeout=TTL_S + 30)["workers"] == 0
    assert liveness_check(name, worker.env) == 1


def test_unready_when_redis_does_not_answer(own_redis: RedisServer) -> None:
    from webapp import create_app

    ready_client = create_app({"TESTING": True, "REDIS_URL": own_redis.url}).test_client()
    own_redis.stop()
    resp = ready_client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "unavailable", "redis": "unreachable", "broker": "unreachable", "workers": 0}
