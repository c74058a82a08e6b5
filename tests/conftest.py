"""Shared fixtures: one real Redis per test session, real Celery workers as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from worker.devstack import ROOT, RedisServer, worker_command

TEST_USERS = ["romain", "anes", "claire", "solo", "rare"]


def planted_documents() -> list[dict[str, Any]]:
    """Three users with clear sessions, a user with one event, a user with three events, bad documents."""
    import numpy as np

    rng = np.random.default_rng(42)
    docs: list[dict[str, Any]] = []
    base = 1663844400000  # 2022-09-22T11:00:00Z
    for u, user in enumerate(["romain", "anes", "claire"]):
        for s in range(4):  # four sessions a day apart (plus 2 h per user), 20 events ~30 s apart
            start = base + s * 86_400_000 + u * 7_200_000
            offsets = np.concatenate([[0], np.cumsum(rng.integers(5_000, 55_000, 19))])
            for i in range(20):
                t = start + int(offsets[i])
                stamp: Any = t if i % 2 else _iso(t)
                docs.append({"@timestamp": stamp, "util": user, "ecran": f"e{i % 4:02d}", "instance": f"instance{u}{s % 2}"})
    docs.append({"@timestamp": _iso(base + 3_600_000), "util": "solo", "ecran": "connexion", "instance": "i9"})
    for k in range(3):
        docs.append({"@timestamp": base + k * 10_000, "util": "rare", "ecran": "01", "instance": "i8"})
    docs += [
        {"@timestamp": "garbage", "util": "romain", "ecran": "x", "instance": "y"},
        {"@timestamp": base, "util": "anes", "ecran": 7, "instance": "y"},
        {"@timestamp": base, "util": "nobody-asked", "ecran": 7, "instance": "y"},
    ]
    return docs


def _iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.ndjson"
    path.write_text("".join(json.dumps(d) + "\n" for d in planted_documents()))
    return path


class WorkerProcess:
    """A real ``celery worker`` subprocess."""

    def __init__(self, env: dict[str, str], log: Path, concurrency: int = 2, name: str = "test") -> None:
        self.env, self.log, self.concurrency, self.name = env, log, concurrency, name
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "WorkerProcess":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                worker_command(self.concurrency, name=self.name, loglevel="INFO"),
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log.read_bytes()[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def stop(self, sig: int = 15) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELASTICSEARCH_", "EVENT"))}
    env.update({"REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def file_worker(redis_server: RedisServer, events_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker reading the planted events file, on Redis database 0."""
    tmp = tmp_path_factory.mktemp("file-worker")
    env = worker_env(redis_server.url, EVENT_SOURCE="file", EVENTS_PATH=str(events_file), EVENTS_CACHE_DIR=str(tmp / "cache"))
    worker = WorkerProcess(env, tmp / "worker.log").start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def app(redis_server: RedisServer):  # noqa: ANN201
    from webapp import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_server.url})


@pytest.fixture
def client(app):  # noqa: ANN001, ANN201
    return app.test_client()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def wait_finished(client: Any, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll a job until it leaves queued/running."""
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(f"/jobs/{job_id}")
        assert resp.status_code == 200, resp.get_json()
        job = resp.get_json()
        if job["status"] not in ("queued", "running"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
        time.sleep(0.1)
