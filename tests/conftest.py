"""Shared fixtures: one real Redis per session handing each test a clean database of its own, a real
Celery worker subprocess, the API built by its factory (as pallets/flask's tutorial tests do)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack import RedisServer, start_redis
from tests.helpers import RedisDatabases, WorkerProcess, planted_documents, worker_env


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_databases(redis_server: RedisServer) -> RedisDatabases:
    return RedisDatabases(redis_server)


@pytest.fixture
def redis_url(redis_databases: RedisDatabases) -> Iterator[str]:
    """A clean Redis database of this test's own (no worker consumes it)."""
    url = redis_databases.take()
    yield url
    redis_databases.give_back(url)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def app(redis_url: str):
    """The API on this test's own database: jobs are really enqueued, and stay queued."""
    from webapp import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_url})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.ndjson"
    path.write_text("".join(json.dumps(d) + "\n" for d in planted_documents()))
    return path


@pytest.fixture(scope="session")
def file_worker(
    redis_databases: RedisDatabases, events_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker reading the planted events file, on a database of its own for the session."""
    tmp = tmp_path_factory.mktemp("file-worker")
    url = redis_databases.take()
    env = worker_env(url, EVENT_SOURCE="file", EVENTS_PATH=str(events_file), EVENT_STORE_DIR=str(tmp / "cache"))
    worker = WorkerProcess(env, tmp / "worker.log").start()
    yield worker
    worker.stop()
    redis_databases.give_back(url)


@pytest.fixture
def worker_redis(file_worker: WorkerProcess) -> Iterator[redis.Redis]:
    """The worker's database; the job store's keys (``sz:*``) are wiped after each test, so every
    test starts from an empty store (the broker's own keys stay: the worker is listening on them)."""
    with redis.Redis.from_url(file_worker.redis_url) as client:
        yield client
        stale = list(client.scan_iter("sz:*", count=1000))
        if stale:
            client.delete(*stale)


@pytest.fixture
def worker_app(file_worker: WorkerProcess, worker_redis: redis.Redis):
    """The API on the file worker's database: its jobs really run."""
    from webapp import create_app

    # configured with the worker's source, as a deployment is: the API identifies the data it
    # reads to decide what may be shared (sessionizer/datasource.py)
    return create_app(
        {
            "TESTING": True,
            "REDIS_URL": file_worker.redis_url,
            "EVENT_SOURCE": "file",
            "EVENTS_PATH": file_worker.env["EVENTS_PATH"],
        }
    )


@pytest.fixture
def worker_client(worker_app):
    return worker_app.test_client()
