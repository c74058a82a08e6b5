"""What the API's metrics cost on the poll path: ``GET /jobs/<id>`` of a finished job, metrics on
(``METRICS_ENABLED=true``: every request counted and timed into prometheus_client's multiprocess
files) against metrics off, side by side in one run.

    python -m benchmarks.bench_metrics [--runs 5] [--clients 100] [--seconds 5]

Two API servers run at once on one Redis, as deployed (gunicorn, the project's config, 2 worker
processes each), identical but for ``METRICS_ENABLED``; only the one being measured gets load.
Each run measures both, in alternating order: saturated (closed loop, the maximum throughput, and
its p99 latency), then paced (each poller every 100 ms, 1,000 requests/s offered with 100 pollers:
the p99 a client sees at a steady load). The pollers are bench_api's (a raw keep-alive HTTP/1.1 client in 2
processes). Printed: each figure's min / median / max over runs, and the per-run ratio on/off.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_api import pollers, spread
from devstack import local_stack
from sessionizer.jobstore import JobStore

REQUEST = {
    "users": ["romain", "anes"],
    "start": "2022-09-05T00:00:00Z",
    "end": "2022-09-12T00:00:00Z",
    "method": "gap",
    "params": {"max_gap_s": 1800.0, "max_span_s": 86400.0},
    "group_by": ["user"],
}


def finished_job(store: JobStore) -> str:
    """A succeeded job, as the workers would leave it (two units of one session each)."""
    job = store.create(REQUEST, deadline_s=3600)
    store.start(job["id"], 2)
    for unit, user in enumerate(REQUEST["users"]):
        session = {
            "user": user,
            "instance": "i1",
            "start": "2022-09-05T09:00:00Z",
            "end": "2022-09-05T10:00:00Z",
            "duration_s": 3600.0,
            "events": 40,
            "entry_screen": "a",
            "exit_screen": "b",
            "truncated_start": False,
            "truncated_end": False,
        }
        stats = {"users": 1, "events": 40, "invalid_events": 0, "noise_events": 0, "sessions": 1}
        store.complete_unit(job["id"], unit, 1, [session], stats)
    assert store.finish(job["id"])
    return job["id"]


def ratio(on: list[float], off: list[float]) -> str:
    return spread([a / b for a, b in zip(on, off)], "{:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    with local_stack(tmp, workers=0, apis=0, RATE_LIMIT_PER_S="1000000", RATE_LIMIT_BURST="1000000") as stack:
        job_id = finished_job(JobStore.from_url(stack.redis_url))
        ports = {
            name: int(stack.add_api(2, name=f"api-{name}", METRICS_ENABLED=flag).rsplit(":", 1)[1])
            for name, flag in (("on", "true"), ("off", "false"))
        }
        path = f"/jobs/{job_id}"
        for port in ports.values():  # warm both: imports, connection pools, first requests
            pollers(port, path, 10, 1.0, None)

        figures: dict[str, dict[str, list[float]]] = {v: {"rps": [], "p99": [], "paced_p99": []} for v in ports}
        print(
            f"GET {path} (a succeeded job), gunicorn 2 processes, {args.clients} keep-alive pollers, "
            f"{args.runs} runs x {args.seconds:.0f} s each way, metrics on and off alternating"
        )
        for run in range(args.runs):
            order = ["on", "off"] if run % 2 == 0 else ["off", "on"]
            for variant in order:
                sat = pollers(ports[variant], path, args.clients, args.seconds, None)
                paced = pollers(ports[variant], path, args.clients, args.seconds, 0.1)
                bad = {c: n for c, n in {**sat["statuses"], **paced["statuses"]}.items() if c != 200}
                if bad:
                    raise RuntimeError(f"non-200 answers with metrics {variant}: {bad}")
                figures[variant]["rps"].append(sat["rps"])
                figures[variant]["p99"].append(sat["p99_ms"])
                figures[variant]["paced_p99"].append(paced["p99_ms"])
                print(
                    f"  run {run + 1} metrics {variant:3}: {sat['rps']:7.0f} req/s saturated, "
                    f"p99 {sat['p99_ms']:6.1f} ms; "
                    f"paced: {paced['rps']:5.0f} req/s, p99 {paced['p99_ms']:6.1f} ms",
                    flush=True,
                )
        on, off = figures["on"], figures["off"]
        print("\nthroughput, saturated (req/s)")
        print(f"  metrics on : {spread(on['rps'], '{:.0f}')}")
        print(f"  metrics off: {spread(off['rps'], '{:.0f}')}")
        print(f"  on/off     : {ratio(on['rps'], off['rps'])}")
        print("p99 latency, saturated (ms)")
        print(f"  metrics on : {spread(on['p99'])}")
        print(f"  metrics off: {spread(off['p99'])}")
        print(f"  on/off     : {ratio(on['p99'], off['p99'])}")
        print(f"p99 latency, paced at {args.clients * 10:,} req/s offered (ms)")
        print(f"  metrics on : {spread(on['paced_p99'])}")
        print(f"  metrics off: {spread(off['paced_p99'])}")
        print(f"  on/off     : {ratio(on['paced_p99'], off['paced_p99'])}")
        print(f"medians: throughput on/off {statistics.median(on['rps']) / statistics.median(off['rps']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
