"""Helpers shared by test modules: planted events, a real Celery worker subprocess, polling, and
playing the worker's part through the job store. Test modules import from here, never from each other."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from devstack import ROOT, RedisServer, worker_command

PAST = {"users": ["romain", "anes"], "start": "2022-09-22T11:00Z", "end": "2022-09-28T12:00Z", "method": "gap"}
FUTURE = {**PAST, "end": "2999-01-01T00:00Z", "start": "2998-12-31T00:00Z"}


# A Redis server has 16 databases: tests run one at a time and hold one or two each, so the pool
# runs out only if a fixture leaks; the error says so rather than sharing a database.
_DATABASES = 16


class RedisDatabases:
    """Hands out the databases of one ``redis-server``, emptied when taken and when given back."""

    def __init__(self, server: RedisServer) -> None:
        self.base = server.url.rsplit("/", 1)[0]
        self.free = list(range(_DATABASES))

    def take(self) -> str:
        if not self.free:
            raise RuntimeError("every Redis database is in use: a fixture did not give one back")
        url = f"{self.base}/{self.free.pop(0)}"
        self._flush(url)
        return url

    def give_back(self, url: str) -> None:
        self._flush(url)
        self.free.append(int(url.rsplit("/", 1)[1]))

    @staticmethod
    def _flush(url: str) -> None:
        with redis.Redis.from_url(url) as client:
            client.flushdb()


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
                docs.append(
                    {"@timestamp": stamp, "util": user, "ecran": f"e{i % 4:02d}", "instance": f"instance{u}{s % 2}"}
                )
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
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


class WorkerProcess:
    """A real ``celery worker`` subprocess."""

    def __init__(self, env: dict[str, str], log: Path, concurrency: int = 2, name: str = "test") -> None:
        self.env, self.log, self.concurrency, self.name = env, log, concurrency, name
        self.proc: subprocess.Popen | None = None

    @property
    def redis_url(self) -> str:
        return self.env["REDIS_URL"]

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                worker_command(self.concurrency, name=self.name, loglevel="INFO"),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
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


# every worker environment gets an event store of its own (never the user's var/), removed at exit
_STORES = tempfile.TemporaryDirectory(prefix="sessionizer-test-stores-")


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The test process's environment without event-source settings, pointed at ``redis_url``,
    with a fresh, empty event store (``EVENT_STORE_DIR``) unless ``extra`` names one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELASTICSEARCH_", "EVENT"))}
    env.update({"REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", "EVENT_STORE_DIR": tempfile.mkdtemp(dir=_STORES.name)})
    env.update(extra)
    return env


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


def assert_problem(resp: Any, status: int) -> dict:
    """``resp`` is an RFC 9457 problem+json answer with ``status``; its body."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["status"] == status and body["title"] and body["type"] == "about:blank"
    return body


class Queue:
    """The Celery queue in Redis: what the API really sent."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.before = self.sent()

    def sent(self) -> list[tuple[str, list]]:
        out = []
        for raw in self.client.lrange("celery", 0, -1):
            msg = json.loads(raw)
            out.append((msg["headers"]["task"], json.loads(base64.b64decode(msg["body"]))[0]))
        return out

    def __eq__(self, other: object) -> bool:
        return self.sent()[len(self.before) :] == other

    def __repr__(self) -> str:
        return repr(self.sent()[len(self.before) :])


class NewTasks(Queue):
    """The tasks sent since the fixture was made, oldest first (kombu LPUSHes: newest at the head)."""

    def new(self) -> list[tuple[str, list]]:
        now = self.sent()
        return now[: len(now) - len(self.before)][::-1]

    def __eq__(self, other: object) -> bool:
        return self.new() == other

    def __repr__(self) -> str:
        return repr(self.new())


def unique(body: dict, tag: str) -> dict:
    """The same request shape, but not identical to any other request (shared results)."""
    return {**body, "users": [*body["users"], f"user-{tag}-{time.monotonic_ns()}"]}


def play_worker(store: Any, job_id: str, per_unit: list[list[dict]]) -> None:
    """What the worker does to a computation: start it, store each unit, finish it."""
    cid = store.view(job_id)["computation"]
    assert store.start(cid, len(per_unit))
    for i, rows in enumerate(per_unit):
        store.complete_unit(cid, i, 1, rows, {"sessions": len(rows)})
    assert store.finish(cid)


def session(user: str, k: int) -> dict:
    """A session row as a unit stores it (the k-th of the user's, half a minute long)."""
    return {
        "user": user,
        "instance": "i1",
        "start": f"2022-09-22T11:{k:02d}:00Z",
        "end": f"2022-09-22T11:{k:02d}:30Z",
        "duration_s": 30.0,
        "events": 3,
        "entry_screen": "a",
        "exit_screen": "b",
        "truncated_start": False,
        "truncated_end": k == 2,
        "split_reason": "end_of_data" if k == 2 else "idle_gap",
    }
