"""Fan-out: one job of 200 users x 5,000 events, 2 worker processes vs 1.

    python -m benchmarks.bench_fanout [--users 200] [--events 5000] [--runs 3]

Setup: an embedded Redis, the file source (NDJSON, the embedded default) partitioned once before
timing, and a Celery worker subprocess with ``--concurrency 1`` or ``--concurrency 2`` (prefork
pool: separate processes), alternated run by run so both see the same machine noise. A job is
submitted through the API (in-process Flask test client, so no HTTP server competes for the two
cores) and polled every 50 ms until it succeeds; wall time is submit -> succeeded. The speed-up
is reported per pair of runs (min/median/max), with the per-configuration times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from devstack import ROOT, local_stack, worker_command


def write_events(path: Path, users: int, events: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    names = [f"user{i:03d}" for i in range(users)]
    t0 = 1661990400000  # 2022-09-01
    with open(path, "w") as fh:
        for u, user in enumerate(names):
            # sessions of ~40 events, exponential 30 s gaps, hours between sessions
            gaps = rng.exponential(30_000, events).astype(np.int64) + 1000
            breaks = rng.random(events) < 1 / 40
            gaps[breaks] += rng.integers(3_600_000, 30_000_000, int(breaks.sum()))
            t = t0 + np.cumsum(gaps)
            screens = rng.integers(0, 12, events)
            for k in range(events):
                fh.write(
                    json.dumps(
                        {
                            "@timestamp": int(t[k]),
                            "util": user,
                            "ecran": f"s{screens[k]}",
                            "instance": f"instance{u % 7}",
                        }
                    )
                    + "\n"
                )
    return names


def run_job(client, users: list[str]) -> float:
    body = {"users": users, "start": "2022-09-01T00:00Z", "end": "2023-06-01T00:00Z", "method": "hdbscan"}
    started = time.perf_counter()
    resp = client.post("/jobs", json=body, headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.get_json()
    job_id = resp.get_json()["id"]
    while True:
        job = client.get(f"/jobs/{job_id}").get_json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    assert job["status"] == "succeeded", job
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    with local_stack(workers=0, apis=0) as stack:  # a Redis alone: the workers are started below
        tmp, redis_server = stack.tmp, stack.redis
        events = tmp / "events.ndjson"
        users = write_events(events, args.users, args.events)
        os.environ["REDIS_URL"] = redis_server.url
        from webapp import create_app

        client = create_app({"TESTING": True, "REDIS_URL": redis_server.url}).test_client()
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "EVENT_SOURCE": "file",
            "EVENTS_PATH": str(events),
            "EVENT_STORE_DIR": str(tmp / "cache"),
        }
        # partition the file once, outside the timings (every later job reads only its users' buckets)
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from worker.sources import source_from_settings;"
                "from sessionizer.settings import get_settings;"
                "source_from_settings(get_settings()).read_events(['user000'], 0, 1)",
            ],
            env=env,
            cwd=ROOT,
            check=True,
        )
        times: dict[int, list[float]] = {1: [], 2: []}
        for run in range(args.runs + 1):  # the first round warms up and is not counted
            for conc in (1, 2):
                log_path = tmp / f"worker{conc}-{run}.log"
                with open(log_path, "wb") as log:
                    proc = subprocess.Popen(
                        worker_command(conc, name=f"bench{conc}", loglevel="INFO"),
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                try:
                    while b" ready." not in log_path.read_bytes():  # time the job, not the start-up
                        time.sleep(0.1)
                    elapsed = run_job(client, users)
                finally:
                    proc.terminate()
                    proc.wait(60)
                if run:
                    times[conc].append(elapsed)
                print(f"  run {run}{' (warm-up)' if not run else ''}: concurrency {conc}: {elapsed:.2f} s", flush=True)
        ratios = [a / b for a, b in zip(times[1], times[2])]

    def mmm(xs: list[float]) -> str:
        return f"min {min(xs):.2f} / median {statistics.median(xs):.2f} / max {max(xs):.2f}"

    total = args.users * args.events
    print(f"\nfan-out: one job of {args.users} users x {args.events} events ({total:,} events), file source")
    print(f"  1 worker process : {mmm(times[1])} s  ({total / statistics.median(times[1]):,.0f} events/s)")
    print(f"  2 worker processes: {mmm(times[2])} s  ({total / statistics.median(times[2]):,.0f} events/s)")
    print(f"  speed-up 2 vs 1  : {mmm(ratios)}x   (target >= 1.7x on 2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
