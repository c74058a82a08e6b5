"""Workers on other hosts, one of them cut off mid-job: Redis, the API and two workers each in a
network namespace of their own that this test makes, joined by veth pairs to a bridge (itself in
a namespace of the test's, so nothing touches the host's network). The job must finish, exactly,
with the other worker within the recovery bound; when the link comes back, the cut worker's late
write is refused (its lease was taken over) and it takes new work.

Needs root and ``ip`` (iproute2), as CI has; skipped with the reason otherwise."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import redis

from devstack import ROOT, api_command, redis_server_binary, worker_command
from tests.helpers import worker_env

pytestmark = pytest.mark.slow

USERS = [f"user{i:02d}" for i in range(40)]
REQUEST = {"users": USERS, "start": "2022-09-01T00:00Z", "end": "2022-10-01T00:00Z", "method": "hdbscan"}
SUBNET = "10.213.7"
ROLES = {"redis": 1, "api": 2, "w1": 3, "w2": 4}
LEASE_S, INTERVAL_S = 3.0, 1.0
CLONE_NEWNET = 0x40000000


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"szprobe{os.getpid()}"
    out = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if out.returncode != 0:
        return f"cannot make a network namespace here: {out.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Hosts:
    """The namespaces, links and bridge of this test; everything it made is removed at the end."""

    def __init__(self) -> None:
        self.tag = f"sz{os.getpid() % 100000}"
        self.names = {role: f"{self.tag}{role}" for role in ROLES}
        self.bridge_ns = f"{self.tag}br"
        self.made: list[str] = []

    def ip(self, *args: str, ns: str | None = None) -> None:
        cmd = ["ip", *(["-n", ns] if ns else []), *args]
        out = subprocess.run(cmd, capture_output=True, text=True)
        assert out.returncode == 0, f"{' '.join(cmd)}: {out.stderr}"

    def build(self) -> None:
        for ns in [self.bridge_ns, *self.names.values()]:
            self.ip("netns", "add", ns)
            self.made.append(ns)
            self.ip("link", "set", "lo", "up", ns=ns)
        self.ip("link", "add", "br0", "type", "bridge", ns=self.bridge_ns)
        self.ip("link", "set", "br0", "up", ns=self.bridge_ns)
        for role, ns in self.names.items():
            # both ends made inside the bridge's namespace, one then moved into the host's
            self.ip("link", "add", f"p{role}", "type", "veth", "peer", "name", "eth0", ns=self.bridge_ns)
            self.ip("link", "set", "eth0", "netns", ns, ns=self.bridge_ns)
            self.ip("link", "set", f"p{role}", "master", "br0", ns=self.bridge_ns)
            self.ip("link", "set", f"p{role}", "up", ns=self.bridge_ns)
            self.ip("addr", "add", f"{SUBNET}.{ROLES[role]}/24", "dev", "eth0", ns=ns)
            self.ip("link", "set", "eth0", "up", ns=ns)

    def link(self, role: str, up: bool) -> None:
        """Cut (or restore) a host's link, at the bridge's end: packets are dropped, nothing reset."""
        self.ip("link", "set", f"p{role}", "up" if up else "down", ns=self.bridge_ns)

    def address(self, role: str) -> str:
        return f"{SUBNET}.{ROLES[role]}"

    def run(self, role: str, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.names[role], *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def call_in(self, role: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in a thread that joined the role's network namespace (the test's own client)."""
        box: dict[str, Any] = {}

        def target() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{self.names[role]}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    box["error"] = OSError(ctypes.get_errno(), "setns failed")
                    return
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001  (re-raised in the caller)
                box["error"] = exc
            finally:
                os.close(fd)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def remove(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    why = _why_not()
    if why:
        pytest.skip(why)
    h = Hosts()
    try:
        h.build()
        yield h
    finally:
        h.remove()


def write_events(path: Path) -> None:
    rng = np.random.default_rng(9)
    t0 = 1661990400000
    with open(path, "w") as fh:
        for user in USERS:
            t = t0
            for _ in range(2500):
                t += int(rng.exponential(60_000)) + 1000 if rng.random() < 0.97 else 3_600_000
                fh.write(
                    json.dumps({"@timestamp": t, "util": user, "ecran": f"s{int(rng.integers(8))}", "instance": "i1"})
                    + "\n"
                )


def wait_log(path: Path, needle: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while needle not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{needle!r} not in {path.name}:\n{path.read_text()[-3000:]}"
        time.sleep(0.1)


def test_a_worker_cut_off_mid_job_is_replaced_and_its_late_write_refused(hosts: Hosts, tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    write_events(events)
    redis_addr = hosts.address("redis")
    url = f"redis://{redis_addr}:6379/0"
    env = worker_env(
        url,
        EVENT_SOURCE="file",
        EVENTS_PATH=str(events),
        EVENTS_CACHE_DIR=str(tmp_path / "cache"),
        UNIT_LEASE_S=str(LEASE_S),
        RECONCILE_INTERVAL_S=str(INTERVAL_S),
        CELERY_VISIBILITY_TIMEOUT_S="7200",
        ALLOWED_HOSTS=hosts.address("api"),
    )
    logs = {role: tmp_path / f"{role}.log" for role in ROLES}
    procs = [
        hosts.run(
            "redis",
            [
                redis_server_binary(),
                "--bind",
                redis_addr,
                "--port",
                "6379",
                "--dir",
                str(tmp_path),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            logs["redis"],
            env,
        )
    ]
    try:
        wait_log(logs["redis"], "Ready to accept connections")
        procs.append(hosts.run("api", api_command(hosts.address("api"), 8000), logs["api"], env))
        procs += [hosts.run(w, worker_command(2, name=w), logs[w], env) for w in ("w1", "w2")]
        for w in ("w1", "w2"):
            wait_log(logs[w], " ready.")
        base = f"http://{hosts.address('api')}:8000"

        def client_call(method: str, path: str, **kw: Any) -> Any:
            def go() -> Any:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        with httpx.Client(base_url=base, timeout=10) as c:
                            resp = c.request(method, path, **kw)
                        resp.raise_for_status()
                        return resp.json()
                    except httpx.TransportError:
                        assert time.monotonic() < deadline
                        time.sleep(0.2)

            return hosts.call_in("api", go)

        def finished(job_id: str, timeout: float) -> dict:
            deadline = time.monotonic() + timeout
            while True:
                job = client_call("GET", f"/jobs/{job_id}")
                if job["status"] not in ("queued", "running"):
                    return job
                assert time.monotonic() < deadline, job
                time.sleep(0.1)

        # the yardstick: the same job, undisturbed
        reference = client_call("POST", "/jobs", json=REQUEST, headers={"Cache-Control": "no-cache"})["id"]
        assert finished(reference, 120)["status"] == "succeeded"
        want = client_call("GET", f"/jobs/{reference}/sessions")["sessions"]

        job_id = client_call("POST", "/jobs", json=REQUEST, headers={"Cache-Control": "no-cache"})["id"]
        workers = {"w1": procs[2], "w2": procs[3]}
        pools = {w: {c.pid for c in psutil.Process(p.pid).children()} for w, p in workers.items()}

        def holder() -> tuple[str, int] | None:
            """The worker and pool process holding a lease of the job, if any (read in Redis' host)."""
            with redis.Redis.from_url(url, socket_timeout=5) as r:
                for raw in r.hvals(f"sz:job:{job_id}:leases"):
                    lease = json.loads(raw)
                    pid = int(lease["owner"].rsplit(":", 1)[1]) if lease["token"] else 0
                    for w, pool in pools.items():
                        if pid in pool:
                            return w, pid
            return None

        # The cut must land while a worker computes a unit (units are grouped by work: this job
        # may be a single unit): its pool process is paused for the instant between finding it
        # holding a lease and cutting its host's link.
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "no worker ever held a unit of the job"
            held = hosts.call_in("redis", holder)
            if held is None:
                continue
            cut, pid = held
            os.kill(pid, signal.SIGSTOP)
            if hosts.call_in("redis", holder) == held:
                break
            os.kill(pid, signal.SIGCONT)  # it finished meanwhile: try the next one
        other = "w2" if cut == "w1" else "w1"
        hosts.link(cut, up=False)
        os.kill(pid, signal.SIGCONT)  # it computes on, and its write waits for the link
        # the other worker takes the unit over once its lease lapses (how soon: `python -m
        # benchmarks recovery`); the cut worker's refusal below shows it was taken over
        job = finished(job_id, 120)
        assert job["status"] == "succeeded", job
        assert client_call("GET", f"/jobs/{job_id}/sessions")["sessions"] == want

        hosts.link(cut, up=True)  # its writes held in flight now arrive: refused
        # Its lease was taken over: its result is refused (or, if it was still reading, it stops
        # there, its job being over): either way it writes nothing.
        deadline = time.monotonic() + 120
        while not re.search(
            rf"job_id={job_id} unit=\d+: Task \S+ succeeded in [\d.]+s: '(fenced|stopped)'",
            logs[cut].read_text(errors="replace"),
        ):
            assert time.monotonic() < deadline, logs[cut].read_text()[-3000:]
            time.sleep(0.1)
        assert client_call("GET", f"/jobs/{job_id}/sessions")["sessions"] == want  # unchanged

        # and it takes new work: the other worker stopped, a new job runs on the cut one alone
        workers[other].send_signal(signal.SIGTERM)
        workers[other].wait(30)
        mark = logs[cut].stat().st_size
        again = client_call("POST", "/jobs", json=REQUEST, headers={"Cache-Control": "no-cache"})["id"]
        assert finished(again, 120)["status"] == "succeeded"
        later = logs[cut].read_text(errors="replace")[mark:]
        assert f"job_id={again}" in later and "'done'" in later, later[-3000:]

        # and stopped while its broker has vanished (its link cut mid-unit: nothing answers,
        # nothing refuses), it still exits by itself: the unit it cannot hand back is stopped
        # (its lease lapses), its heartbeats give up, its broker connection has socket timeouts
        job_id = client_call("POST", "/jobs", json=REQUEST, headers={"Cache-Control": "no-cache"})["id"]
        deadline = time.monotonic() + 60
        while (held := hosts.call_in("redis", holder)) is None:
            assert time.monotonic() < deadline, "the worker never held a unit of the last job"
        os.kill(held[1], signal.SIGSTOP)  # the unit stays under way while the link goes
        hosts.link(cut, up=False)
        os.kill(held[1], signal.SIGCONT)
        workers[cut].send_signal(signal.SIGTERM)
        try:
            workers[cut].wait(120)
        except subprocess.TimeoutExpired:
            pytest.fail("a worker whose broker vanished hung in its stop:\n" + logs[cut].read_text()[-3000:])
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait()
