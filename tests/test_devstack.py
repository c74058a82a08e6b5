"""`make demo` and `make up` as a user runs them: real processes, over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from devstack import ROOT, LocalStack, free_port, local_stack, wait_http
from tests.helpers import PAST, planted_documents

pytestmark = pytest.mark.slow


def clean_env(var: Path, **extra: str) -> dict[str, str]:
    """The user's environment without their Redis or event source, with data under ``var``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ELASTICSEARCH_", "EVENT"))}
    env.update(SESSIONIZER_VAR_DIR=str(var), **extra)
    return env


def run_demo(var: Path, port: int) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "devstack", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=clean_env(var, PORT=str(port)),
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def test_demo_prints_sessions_and_a_second_demo_scans_again(tmp_path: Path) -> None:
    port = free_port()
    out = run_demo(tmp_path, port)
    assert "-> 202, Location: /jobs/" in out.stdout
    assert "   succeeded" in out.stdout
    header = next(line for line in out.stdout.splitlines() if line.startswith("user "))
    assert header.split() == ["user", "instance", "start", "end", "duration_s", "events", "entry_screen", "exit_screen"]
    stats = json.loads(out.stdout.split("stats: ", 1)[1].splitlines()[0])
    assert stats["users"] == 6 and stats["sessions"] > 50 and stats["invalid_events"] == 3
    more = next(line for line in out.stdout.splitlines() if line.startswith("... "))
    assert f":{port}" not in more and "make up" in more  # the demo's stack has stopped: no hint points at it
    # everything it wrote is in its data folder (the tests never touch the user's var/)
    assert list((tmp_path / "redis").glob("appendonly*")) and (tmp_path / "logs" / "api.log").is_file()
    assert (tmp_path / "demo-events.ndjson").is_file()
    # the first demo's result is still kept in that Redis: the second one must not reuse it
    again = run_demo(tmp_path, port)
    assert "   running" in again.stdout or "   queued" in again.stdout  # it polled a live job


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def port_free(port: int) -> bool:
    """Nothing listens on the port (connections left in TIME_WAIT do not count, as for a server)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_up(var: Path, port: int, flower_port: int) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """``make up``'s process in a process group of its own (as a terminal's foreground job); returns
    once the whole stack is up, with every process it started."""
    out = var / "up.out"
    with open(out, "w") as fh:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack", "up"],
            cwd=ROOT,
            start_new_session=True,
            env=clean_env(var, PORT=str(port), FLOWER_PORT=str(flower_port)),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    try:
        while "Sessionizer is up" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.2)
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
    except BaseException:
        proc.send_signal(signal.SIGTERM)  # it stops what it has started so far
        proc.wait(60)
        raise
    return proc, psutil.Process(proc.pid).children(recursive=True)


def run_seed_job(base: str) -> str:
    """The seed's body, submitted and followed to its sessions; returns the job id."""
    status, job = http(
        "POST",
        f"{base}/jobs",
        {"utils": ["romain"], "date_min": "2022-09-05 11:00Z", "date_max": "2022-09-28T12:00+02:00"},
    )
    assert status == 202
    deadline = time.monotonic() + 60
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        _, job = http("GET", f"{base}/jobs/{job['id']}")
    assert job["status"] == "succeeded", job
    _, result = http("GET", f"{base}/jobs/{job['id']}/sessions")
    assert result["sessions"] and {s["user"] for s in result["sessions"]} == {"romain"}
    return job["id"]


def check_stack(base: str, job_id: str, children: list[psutil.Process]) -> None:
    kinds = {" ".join(c.cmdline()) for c in children}
    assert any("gunicorn" in k for k in kinds) and any("redis-server" in k for k in kinds)
    assert any("celery" in k and " worker" in k for k in kinds) and any("flower" in k for k in kinds)
    if job_id:
        assert http("GET", f"{base}/jobs/{job_id}")[1]["status"] == "succeeded"  # Redis' AOF kept it


def kill_all(proc: subprocess.Popen, children: list[psutil.Process]) -> None:
    """A failed test leaves nothing running."""
    for p in [psutil.Process(proc.pid), *children]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(30)


def test_up_serves_and_always_stops_everything_it_started(tmp_path: Path) -> None:
    """Started and stopped several times in a row on the same ports and data: each stop (Ctrl-C
    to the foreground process group, or SIGTERM to ``make up``'s process alone) ends every process
    it started and frees the ports; the next start succeeds and still has the earlier job."""
    port, flower_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    job_id = ""
    for how in ("ctrl-c", "sigterm", "ctrl-c"):
        proc, children = start_up(tmp_path, port, flower_port)
        try:
            check_stack(base, job_id, children)
            job_id = job_id or run_seed_job(base)
        except BaseException:
            kill_all(proc, children)
            raise
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends to the foreground job
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, (tmp_path / "up.out").read_text()[-3000:]
        psutil.wait_procs(children, timeout=10)
        left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not left, [c.cmdline() for c in left]
        assert port_free(port) and port_free(flower_port)


def stack_processes(stack: LocalStack) -> list[psutil.Process]:
    roots = [stack.redis.proc, *stack.stack.procs]
    procs = [psutil.Process(p.pid) for p in roots if p is not None]
    return procs + [c for p in procs for c in p.children(recursive=True)]


def test_local_stack_runs_a_job_keeps_the_callers_settings_out_and_stops_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tests' and benchmarks' stack: a job runs through its API and worker; a second API on
    another database sees none of the first one's jobs; Flower asks for its login; the caller's own
    Redis and event source never reach it; everything it started is gone afterwards."""
    monkeypatch.setenv("REDIS_URL", "redis://:x@127.0.0.1:1/0")  # a developer's own settings
    monkeypatch.setenv("EVENT_SOURCE", "elasticsearch")
    monkeypatch.setenv("API_KEYS", "someone:" + "0" * 64)
    events = tmp_path / "events.ndjson"
    events.write_text("".join(json.dumps(d) + "\n" for d in planted_documents()))
    files = {"EVENT_SOURCE": "file", "EVENTS_PATH": str(events), "EVENT_STORE_DIR": str(tmp_path / "cache")}
    with local_stack(tmp_path / "stack", flower=True, **files) as stack:
        assert stack.env["REDIS_URL"] == stack.redis.url != os.environ["REDIS_URL"]
        assert "API_KEYS" not in stack.env
        with httpx.Client(timeout=90) as http:
            done = http.post(f"{stack.api}/jobs", json=PAST, headers={"Prefer": "wait=60"}).json()
            assert done["status"] == "succeeded", done
            assert http.get(f"{stack.api}/jobs/{done['id']}/sessions").status_code == 200

            other = stack.add_api(1, name="other", db=1, **files)  # no worker on database 1
            queued = http.post(f"{other}/jobs", json={**PAST, "method": "hdbscan"}).json()
            assert http.get(f"{other}/jobs/{queued['id']}").json()["status"] == "queued"
            assert http.get(f"{other}/jobs/{done['id']}").status_code == 404
            assert http.get(f"{stack.api}/jobs/{queued['id']}").status_code == 404

            assert stack.flower and stack.flower_auth
            assert http.get(f"{stack.flower}/workers").status_code == 401
            user, password = stack.flower_auth.split(":", 1)
            assert http.get(f"{stack.flower}/workers", auth=(user, password)).status_code == 200
        started = stack_processes(stack)
        assert len(started) >= 1 + 1 + 2 + 1  # Redis, a worker and its pool, APIs, Flower
    gone, alive = psutil.wait_procs(started, timeout=15)
    assert [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert (tmp_path / "stack" / "worker.log").exists()  # a folder given is kept, logs and all


def test_local_stack_folder_is_temporary_unless_given() -> None:
    with local_stack(workers=0, apis=0) as stack:
        folder = stack.tmp
        with redis.Redis.from_url(stack.db_url(3)) as client:
            assert client.ping() and client.connection_pool.connection_kwargs["db"] == 3
    assert not folder.exists()
