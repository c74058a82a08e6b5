"""`make demo` and `make up` as a user runs them: real processes, over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from worker.devstack import ROOT, free_port, wait_http


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo's data folder for this module (its tests share it as runs of one checkout would):
    never the user's own ``var/``."""
    return str(tmp_path_factory.mktemp("var"))


@pytest.fixture
def clean_env(var_dir: str):  # noqa: ANN201
    def env(**extra: str) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ELASTICSEARCH_", "EVENT"))}
        out.update(SESSIONIZER_VAR_DIR=var_dir, **extra)
        return out

    return env


def test_demo_prints_sessions_and_exits_zero(clean_env) -> None:  # noqa: ANN001
    out = subprocess.run([sys.executable, "-m", "worker.demo", "demo"], cwd=ROOT, capture_output=True, text=True,
                         env=clean_env(PORT=str(free_port())), timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "-> 202, Location: /jobs/" in out.stdout
    assert "   succeeded" in out.stdout
    header = next(line for line in out.stdout.splitlines() if line.startswith("user "))
    assert header.split() == ["user", "instance", "start", "end", "duration_s", "events", "entry_screen", "exit_screen"]
    stats = json.loads(out.stdout.split("stats: ", 1)[1].splitlines()[0])
    assert stats["users"] == 6 and stats["sessions"] > 50 and stats["invalid_events"] == 3


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def test_up_serves_the_seed_body_and_sigint_stops_everything(clean_env) -> None:  # noqa: ANN001
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "worker.demo", "up"], cwd=ROOT, start_new_session=True,
                            env=clean_env(PORT=str(port), FLOWER_PORT=str(free_port())),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=120)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4  # redis, worker (+ pool), gunicorn (+ workers), flower
        status, job = http("POST", f"{base}/jobs", {"utils": ["romain"], "date_min": "2022-09-05 11:00Z",
                                                    "date_max": "2022-09-28T12:00+02:00"})
        assert status == 202
        deadline = time.monotonic() + 60
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
            _, job = http("GET", f"{base}/jobs/{job['id']}")
        assert job["status"] == "succeeded", job
        _, result = http("GET", f"{base}/jobs/{job['id']}/sessions")
        assert result["sessions"] and {s["user"] for s in result["sessions"]} == {"romain"}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C to the process group
        proc.wait(60)
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_a_second_demo_scans_again_rather_than_showing_a_kept_result(clean_env) -> None:  # noqa: ANN001
    env = clean_env(PORT=str(free_port()))
    out = subprocess.run([sys.executable, "-m", "worker.demo", "demo"], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "   running" in out.stdout or "   queued" in out.stdout  # it polled a live job
