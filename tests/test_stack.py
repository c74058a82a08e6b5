"""`make up` as an operator runs it, through real processes: it heals the processes that die, takes
a free port when Flower's is taken, prints the Redis URL other workers need, and stops within
10 s even mid-job and even when signalled again during the stop; after a restart, the job that
was running finishes exactly. `make worker` refuses to start without a Redis URL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from devstack import ROOT, free_port, port_free, wait_http

pytestmark = pytest.mark.slow

USERS = [f"user{i:02d}" for i in range(40)]
REQUEST = {"users": USERS, "start": "2022-09-01T00:00Z", "end": "2022-10-01T00:00Z", "method": "hdbscan"}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 users with a few thousand events each: a job of seconds, so a stop lands mid-job."""
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("events") / "events.ndjson"
    t0 = 1661990400000  # 2022-09-01
    with open(path, "w") as fh:
        for user in USERS:
            t = t0
            for _ in range(2500):
                t += int(rng.exponential(60_000)) + 1000 if rng.random() < 0.97 else 3_600_000
                fh.write(
                    json.dumps({"@timestamp": t, "util": user, "ecran": f"s{int(rng.integers(8))}", "instance": "i1"})
                    + "\n"
                )
    return path


def env_for(var: Path, events: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ELASTICSEARCH_", "EVENT"))}
    env.update(
        SESSIONIZER_VAR_DIR=str(var),
        EVENT_SOURCE="file",
        EVENTS_PATH=str(events),
        EVENTS_CACHE_DIR=str(var / "cache"),
        UNIT_LEASE_S="3",
        RECONCILE_INTERVAL_S="1",
        **extra,
    )
    return env


class Up:
    """``make up``'s process, its output, and the processes it runs."""

    def __init__(self, var: Path, env: dict[str, str]) -> None:
        self.out = var / "up.out"
        self.offset = self.out.stat().st_size if self.out.exists() else 0
        with open(self.out, "a") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "devstack", "up"],
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.out.read_text()[self.offset :]

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.text()[-3000:]
            time.sleep(0.1)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def child(self, *words: str) -> psutil.Process:
        """The direct child whose command line has every word."""
        for c in psutil.Process(self.proc.pid).children():
            if all(w in " ".join(c.cmdline()) for w in words):
                return c
        raise AssertionError(f"no child {words}: {[c.cmdline() for c in self.children()]}")

    def kill(self) -> None:
        for p in [*self.children(), psutil.Process(self.proc.pid)]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(30)


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        if up.proc.poll() is None:
            up.kill()


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def finished(base: str, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        _, job = http("GET", f"{base}/jobs/{job_id}")
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_up_heals_moves_off_a_taken_port_and_stops_quickly_mid_job(tmp_path: Path, events: Path, ups: list[Up]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with socket.socket() as taken:  # another stack's Flower already has this port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        flower_port = taken.getsockname()[1]
        up = Up(tmp_path, env_for(tmp_path, events, PORT=str(port), FLOWER_PORT=str(flower_port)))
        ups.append(up)
        up.wait_for("Sessionizer is up")
        text = up.text()
        assert f"port {flower_port} is taken: Flower listens on" in text
        moved = int(text.split("Flower listens on ", 1)[1].split()[0])
        assert moved != flower_port and f"Flower http://127.0.0.1:{moved}" in text
        assert "REDIS_URL=redis://:PASSWORD@127.0.0.1:" in text and "make worker (PASSWORD: REDIS_PASSWORD in" in text

        # a process that dies is started again, and says so
        up.child("celery", " worker").kill()
        up.wait_for("worker exited (code -9); starting it again in 1 s")
        up.wait_for("worker started again")
        up.child("gunicorn").kill()
        up.wait_for("api exited (code -9); starting it again in 1 s")
        up.wait_for("api started again")
        wait_http(f"{base}/healthz", timeout=60)

        status, job = http("POST", f"{base}/jobs", REQUEST, {"Cache-Control": "no-cache"})
        assert status == 202
        deadline = time.monotonic() + 60
        while http("GET", f"{base}/jobs/{job['id']}")[1]["progress"]["users_done"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert http("GET", f"{base}/jobs/{job['id']}")[1]["status"] == "running"  # the stop lands mid-job
        children = up.children()
        assert any("redis-server" in " ".join(c.cmdline()) for c in children)
        up.proc.send_signal(signal.SIGTERM)
        for _ in range(4):  # an impatient operator: more signals while it stops
            time.sleep(0.3)
            if up.proc.poll() is None:
                os.killpg(up.proc.pid, signal.SIGINT)
        assert up.proc.wait(30) == 0, up.text()[-3000:]
        psutil.wait_procs(children, timeout=30)
        left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not left, [c.cmdline() for c in left]  # Redis included
        assert port_free(port) and port_free(moved)

    # started again on the same data: the job that was running finishes, exactly
    again = Up(tmp_path, env_for(tmp_path, events, PORT=str(port), FLOWER_PORT=str(free_port())))
    ups.append(again)
    again.wait_for("Sessionizer is up")
    interrupted = finished(base, job["id"])
    assert interrupted["status"] == "succeeded", interrupted
    status, reference = http("POST", f"{base}/jobs", REQUEST, {"Cache-Control": "no-cache"})
    assert finished(base, reference["id"])["status"] == "succeeded"
    got = http("GET", f"{base}/jobs/{job['id']}/sessions")[1]["sessions"]
    want = http("GET", f"{base}/jobs/{reference['id']}/sessions")[1]["sessions"]
    assert got == want and len({s["user"] for s in got}) == len(USERS)
    again.proc.send_signal(signal.SIGTERM)
    assert again.proc.wait(30) == 0


def test_make_worker_needs_the_stack_s_redis_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    out = subprocess.run(
        [sys.executable, "-m", "devstack", "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "REDIS_URL" in out.stderr
