"""Chaos: 30 rounds, each a job during which one process of the stack is sent SIGKILL at a random
moment: a worker's main process, a pool process, the API (gunicorn's master), or Redis (started
again from its append-only file). Every job ends ``succeeded`` with sessions identical to an
undisturbed run, and none stays ``running`` past the recovery bound. Real processes throughout:
redis-server, two Celery workers, gunicorn over TCP."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from devstack import ROOT, api_command, free_port, start_redis, wait_http
from tests.helpers import WorkerProcess, worker_env

pytestmark = pytest.mark.slow

ROUNDS = 30
USERS = [f"user{i:02d}" for i in range(16)]
REQUEST = {"users": USERS, "start": "2022-09-01T00:00Z", "end": "2022-10-01T00:00Z", "method": "hdbscan"}
LEASE_S, INTERVAL_S = 2, 0.5
# the recovery bound: a lease, the reconciler's lock ttl (its leader may be the one killed), a
# pass, and the job itself with a worker start or two on this shared machine
BOUND_S = 90


def write_events(path: Path) -> None:
    rng = np.random.default_rng(11)
    t0 = 1661990400000
    with open(path, "w") as fh:
        for user in USERS:
            t = t0
            for _ in range(1200):
                t += int(rng.exponential(60_000)) + 1000 if rng.random() < 0.97 else 3_600_000
                fh.write(
                    json.dumps(
                        {
                            "@timestamp": t,
                            "util": user,
                            "ecran": f"s{int(rng.integers(8))}",
                            "instance": f"i{int(rng.integers(2))}",
                        }
                    )
                    + "\n"
                )


class Chaos:
    """The stack under test, and how to kill and start again each of its parts."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis = start_redis(tmp / "redis")
        events = tmp / "events.ndjson"
        write_events(events)
        self.env = worker_env(
            self.redis.url,
            EVENT_SOURCE="file",
            EVENTS_PATH=str(events),
            EVENTS_CACHE_DIR=str(tmp / "cache"),
            UNIT_LEASE_S=str(LEASE_S),
            RECONCILE_INTERVAL_S=str(INTERVAL_S),
            CELERY_VISIBILITY_TIMEOUT_S="7200",
            CELERY_RESTORE_INTERVAL_S="1",
        )
        self.workers = [self.new_worker(i) for i in range(2)]
        self.port = free_port()
        self.api: subprocess.Popen | None = None
        self.start_api()
        self.kills: dict[str, int] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_worker(self, i: int) -> WorkerProcess:
        return WorkerProcess(self.env, self.tmp / f"worker{i}.log", concurrency=2, name=f"chaos{i}").start()

    def start_api(self) -> None:
        with open(self.tmp / "api.log", "ab") as out:
            self.api = subprocess.Popen(
                api_command("127.0.0.1", self.port),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_http(f"{self.base}/healthz", timeout=60)

    def strike(self, rng: random.Random) -> str:
        victim = rng.choice(["worker", "pool", "api", "redis"])
        self.kills[victim] = self.kills.get(victim, 0) + 1
        if victim == "worker":  # the main process only: its pool processes are orphaned
            i = rng.randrange(len(self.workers))
            w = self.workers[i]
            os.kill(w.proc.pid, signal.SIGKILL)
            w.proc.wait()
            if _group_alive(w.proc.pid):
                os.killpg(w.proc.pid, signal.SIGKILL)  # its orphaned pool processes
            self.workers[i] = self.new_worker(i)
        elif victim == "pool":
            w = rng.choice(self.workers)
            children = psutil.Process(w.proc.pid).children()
            if children:
                rng.choice(children).kill()  # Celery starts a new one itself
        elif victim == "api":
            os.kill(self.api.pid, signal.SIGKILL)
            self.api.wait()
            if _group_alive(self.api.pid):
                os.killpg(self.api.pid, signal.SIGKILL)  # its orphaned gunicorn workers
            self.start_api()
        else:
            self.redis.stop(kill=True)
            self.redis.start()  # same port, same data: the append-only file brings it back
        return victim

    def close(self) -> None:
        for w in self.workers:
            w.stop(signal.SIGKILL)
        if self.api and self.api.poll() is None:
            os.killpg(self.api.pid, signal.SIGKILL)
            self.api.wait()
        self.redis.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    stack = Chaos(tmp_path)
    yield stack
    stack.close()


def call(client: httpx.Client, method: str, path: str, **kw: Any) -> Any:
    """A request that rides out the API or Redis being started again (503s, refused connections)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            resp = client.request(method, path, **kw)
            if resp.status_code != 503:
                assert resp.status_code < 400, resp.text
                return resp.json()
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{method} {path} kept failing"
        time.sleep(0.2)


def run_job(client: httpx.Client) -> str:
    return call(client, "POST", "/jobs", json=REQUEST, headers={"Cache-Control": "no-cache"})["id"]


def wait_done(client: httpx.Client, job_id: str, bound_s: float) -> dict:
    deadline = time.monotonic() + bound_s
    while True:
        job = call(client, "GET", f"/jobs/{job_id}")
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} past the bound: {job}"
        time.sleep(0.2)


def test_every_job_succeeds_exactly_whatever_is_killed(chaos: Chaos) -> None:
    rng = random.Random(16)
    with httpx.Client(base_url=chaos.base, timeout=10) as client:
        reference_id = run_job(client)
        assert wait_done(client, reference_id, BOUND_S)["status"] == "succeeded"
        reference = call(client, "GET", f"/jobs/{reference_id}/sessions")["sessions"]
        assert len({s["user"] for s in reference}) == len(USERS)
        for round_ in range(ROUNDS):
            job_id = run_job(client)
            time.sleep(rng.uniform(0, 1.5))  # a random moment: queued, planning, mid-units, or done
            victim = chaos.strike(rng)
            job = wait_done(client, job_id, BOUND_S)
            assert job["status"] == "succeeded", (round_, victim, job)
            assert call(client, "GET", f"/jobs/{job_id}/sessions")["sessions"] == reference, (round_, victim)
    assert set(chaos.kills) == {"worker", "pool", "api", "redis"}, chaos.kills
    import redis

    with redis.Redis.from_url(chaos.redis.url) as r:
        print(f"kills {chaos.kills}; reconciler {r.hgetall('sz:stats:reconcile')}")
