"""Recovery: how long a job takes to finish once one of its workers is cut, and what leases cost.

    python -m benchmarks.bench_recovery [--runs 5] [--lease 10] [--interval 2] [--units 500]

1. Recovery: two workers (``--concurrency 2`` each) on a job of 40 users x 2,500 events
   (hdbscan, file source, units as the plan groups them); once both hold units, one worker's whole
   process group gets SIGKILL (a lost host: no goodbye). Reported: the time from the kill to the job's ``succeeded``
   (min/median/max over ``--runs``), beside the same job undisturbed, and the bound it should
   stay under: ``UNIT_LEASE_S`` + the reconciler's lock ttl (the killed worker may have led) +
   ``RECONCILE_INTERVAL_S`` + the job's own time. The broker's visibility timeout stays at its
   production two hours: without leases this job would wait that long.
2. The cost of leases: a job of ``--units`` units of one user x 50 events each (gap: each unit is
   mostly overhead, the worst case for leases; planned by the benchmark, one unit per user), one
   worker with ``--concurrency 2``, with leases and without (the same worker with the lease a
   no-op: ``benchmarks.bench_recovery:unleased``), alternated run by run. Reported: the wall times
   and the ratio per pair (min/median/max).

A job is submitted through the API in-process (Flask test client: no HTTP server competes for
the two cores) and polled every 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from devstack import ROOT, local_stack, worker_command
from sessionizer.celery_app import make_celery
from sessionizer.settings import load_settings


def write_events(path: Path, users: list[str], events: int, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    t0 = 1661990400000  # 2022-09-01
    with open(path, "a") as fh:
        for user in users:
            gaps = rng.exponential(60_000, events).astype(np.int64) + 1000
            gaps[rng.random(events) < 1 / 40] += 3_600_000
            for k, t in enumerate(t0 + np.cumsum(gaps)):
                fh.write(
                    json.dumps({"@timestamp": int(t), "util": user, "ecran": f"s{k % 9}", "instance": "i1"}) + "\n"
                )


def submit(client: Any, users: list[str], method: str) -> str:
    body = {"users": users, "start": "2022-09-01T00:00Z", "end": "2022-12-01T00:00Z", "method": method}
    resp = client.post("/jobs", json=body, headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()["id"]


def planned(store: Any, broker: Any, users: list[str]) -> str:
    """A job of one unit per user, planned here (the plan task groups users by work: this part
    wants many small units, the worst case for the leases' cost) and sent as the plan task does."""
    from worker.reconcile import send_units

    body = {"users": users, "start": "2022-09-01T00:00Z", "end": "2022-12-01T00:00Z", "method": "gap"}
    job = store.create(body, deadline_s=3600)
    assert store.start(job["id"], len(users), [[u] for u in users])
    send_units(broker, job["id"], [(i, [u]) for i, u in enumerate(users)])
    return job["id"]


def wait(client: Any, job_id: str) -> None:
    while True:
        job = client.get(f"/jobs/{job_id}").get_json()
        if job["status"] not in ("queued", "running"):
            assert job["status"] == "succeeded", job
            return
        time.sleep(0.05)


class Worker:
    def __init__(self, env: dict[str, str], log: Path, name: str, app: str = "worker.celery_app") -> None:
        cmd = worker_command(2, name=name)
        cmd[cmd.index("worker.celery_app")] = app
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        while b" ready." not in log.read_bytes():
            if self.proc.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.1)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


def spread(xs: list[float], fmt: str = "{:.2f}") -> str:
    return f"min {fmt.format(min(xs))} / median {fmt.format(statistics.median(xs))} / max {fmt.format(max(xs))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lease", type=float, default=10.0, help="UNIT_LEASE_S (default 30 in production)")
    parser.add_argument("--interval", type=float, default=2.0, help="RECONCILE_INTERVAL_S (default 5 in production)")
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--only", choices=["recovery", "cost"], help="run one part only")
    args = parser.parse_args(argv)

    with local_stack(workers=0, apis=0) as stack:  # a Redis alone: the workers are started below
        tmp, redis_server = stack.tmp, stack.redis
        events = tmp / "events.ndjson"
        heavy = [f"heavy{i:02d}" for i in range(40)]
        light = [f"light{i:04d}" for i in range(args.units)]
        write_events(events, heavy, 2500)
        write_events(events, light, 50)
        os.environ["REDIS_URL"] = redis_server.url
        from webapp import create_app

        client = create_app({"TESTING": True, "REDIS_URL": redis_server.url}).test_client()
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "EVENT_SOURCE": "file",
            "EVENTS_PATH": str(events),
            "EVENTS_CACHE_DIR": str(tmp / "cache"),
            "UNIT_LEASE_S": str(args.lease),
            "RECONCILE_INTERVAL_S": str(args.interval),
            "CELERY_VISIBILITY_TIMEOUT_S": "7200",
            "LOG_LEVEL": "WARNING",
        }
        lock_ttl = max(3 * args.interval, 2.0)

        # 1. recovery after a worker is cut
        undisturbed: list[float] = []
        recovered: list[float] = []
        pair = [Worker(env, tmp / "a0.log", "a0"), Worker(env, tmp / "b0.log", "b0")]
        store = client.application.extensions["sessionizer"].store
        for run in range(args.runs if args.only != "cost" else 0):
            started = time.perf_counter()
            wait(client, submit(client, heavy, "hdbscan"))
            undisturbed.append(time.perf_counter() - started)
            job_id = submit(client, heavy, "hdbscan")
            # units are grouped by work (this job may be one unit): cut the worker that holds one
            doomed = None
            while doomed is None:
                owners = {
                    int(json.loads(v)["owner"].rsplit(":", 1)[1])
                    for v in store.client.hvals(f"sz:job:{job_id}:leases")
                    if b'"token":""' not in v
                }
                doomed = next((w for w in pair if owners & set(_children(w.proc.pid))), None)
                time.sleep(0.01)
            doomed.kill()
            cut = time.perf_counter()
            wait(client, job_id)
            recovered.append(time.perf_counter() - cut)
            print(
                f"  run {run}: undisturbed {undisturbed[-1]:.2f} s, cut -> succeeded {recovered[-1]:.2f} s", flush=True
            )
            pair[pair.index(doomed)] = Worker(env, tmp / f"r{run}.log", f"r{run}")  # a replacement
        for w in pair:
            w.stop()

        # 2. the cost of leases, alternated
        store = client.application.extensions["sessionizer"].store
        broker = make_celery(load_settings(overrides={"REDIS_URL": redis_server.url}))
        timed: dict[str, list[float]] = {"leases": [], "no leases": []}
        cpu: dict[str, list[float]] = {"leases": [], "no leases": []}
        redis_proc = psutil.Process(redis_server.proc.pid)
        for run in range(args.runs + 1 if args.only != "recovery" else 0):  # round 0 warms up, not counted
            for kind, app in (("leases", "worker.celery_app"), ("no leases", "benchmarks.bench_recovery:unleased")):
                w = Worker(
                    {**env, "SESSIONIZER_BENCH_UNLEASED": "1"} if kind == "no leases" else env,
                    tmp / f"cost-{kind}-{run}.log",
                    f"cost{run}",
                    app=app,
                )
                tree = [psutil.Process(w.proc.pid), *psutil.Process(w.proc.pid).children(recursive=True)]
                before = _cpu([*tree, redis_proc])
                started = time.perf_counter()
                wait(client, planned(store, broker, light))
                elapsed = time.perf_counter() - started
                used = _cpu([*tree, redis_proc]) - before
                w.stop()
                if run:
                    timed[kind].append(elapsed)
                    cpu[kind].append(used)
                print(
                    f"  run {run}{' (warm-up)' if not run else ''}: {kind}: {elapsed:.2f} s, "
                    f"worker + Redis CPU {used:.2f} s",
                    flush=True,
                )
        ratios = [a / b for a, b in zip(timed["leases"], timed["no leases"])]
        cpu_ratios = [a / b for a, b in zip(cpu["leases"], cpu["no leases"])]

    if recovered:
        print(
            f"\nrecovery: a job of 40 users x 2,500 events (hdbscan), 2 workers x 2 processes, one cut mid-job;"
            f" UNIT_LEASE_S={args.lease:g}, RECONCILE_INTERVAL_S={args.interval:g}"
        )
        print(f"  undisturbed job         : {spread(undisturbed)} s")
        print(f"  cut -> job succeeded    : {spread(recovered)} s")
        print(
            "  bound (lease + lock ttl + interval + the job): "
            f"{args.lease + lock_ttl + args.interval + max(undisturbed):.2f} s"
            f"   (without leases: the visibility timeout, 7200 s)"
        )
    if ratios:
        print(f"\nthe cost of leases: a job of {args.units} units (1 user x 50 events, gap), 1 worker x 2 processes")
        print(f"  wall, with leases      : {spread(timed['leases'])} s")
        print(f"  wall, without leases   : {spread(timed['no leases'])} s")
        print(f"  wall ratio             : {spread(ratios, '{:.3f}')}   (target <= 1.05)")
        print(f"  CPU (worker + Redis), with / without: {spread(cpu['leases'])} s / {spread(cpu['no leases'])} s")
        print(
            f"  CPU ratio              : {spread(cpu_ratios, '{:.3f}')}   "
            "(less sensitive than wall time to a shared machine)"
        )
    return 0


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def _children(pid: int) -> list[int]:
    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def _unleased_app() -> Any:
    """The worker's app with the unit's lease a no-op (the comparison's baseline only)."""
    from sessionizer.jobstore import LeaseGrant
    from worker import jobs
    from worker.celery_app import app

    class NoLease:
        token = ""

        def __init__(self, *args: Any) -> None:
            pass

        def take(self) -> LeaseGrant:
            return LeaseGrant("ok")

        def __enter__(self) -> NoLease:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    jobs.UnitLease = NoLease  # type: ignore[assignment,misc]
    return app


if __name__ == "__main__":
    sys.exit(main())
else:
    unleased = _unleased_app() if os.environ.get("SESSIONIZER_BENCH_UNLEASED") else None
