"""``make bench``: every benchmark, one after the other, each printing its figures.

    python -m benchmarks [name ...] [options for them, e.g. --only cost]

    names: scan, fanout, core_speed, quality, api, metrics, page, sessions_stream, serving, client,
    job, store_format, session_fields, failfast, recovery

Each benchmark measures its comparisons side by side in one run (alternating), with
min/median/max over repeats, because these machines are shared and noisy.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

BENCHES = {
    "quality": ("benchmarks.bench_quality", "sessions vs planted ground truth, range stability (issue 4)"),
    "core_speed": ("benchmarks.bench_core_speed", "sessionization speed on 1,000,000 events (issue 4)"),
    "scan": ("benchmarks.bench_scan", "Elasticsearch scan throughput and peak memory (issue 3)"),
    "fanout": ("benchmarks.bench_fanout", "one job of 200 users x 5,000 events, 2 workers vs 1 (issue 3)"),
    "api": ("benchmarks.bench_api", "100 identical clients; poll throughput under gunicorn (issue 5)"),
    "metrics": ("benchmarks.bench_metrics", "the poll path with the API's metrics on and off (issue 12)"),
    "page": ("benchmarks.bench_page", "the job page drawing 100,000 sessions in headless chromium (issue 12)"),
    "sessions_stream": (
        "benchmarks.bench_sessions_stream",
        "GET /jobs/<id>/sessions of 1,000,000 sessions: API memory, first byte, total (issue 10)",
    ),
    "serving": (
        "benchmarks.bench_serving",
        "gthread vs gevent: /healthz with 64 waits and 64 slow bodies held; polls (issue 9)",
    ),
    "client": ("benchmarks.bench_client", "100 async clients submit then wait: Prefer: wait vs polling (issue 11)"),
    "job": (
        "benchmarks.bench_job",
        "whole 5 M-event jobs vs an orjson pass and the kernels; the event store (issue 15)",
    ),
    "store_format": (
        "benchmarks.bench_store_format",
        "the event store's format vs Arrow IPC, Parquet, npz: a unit's read of 20 users of 500 (issue 15)",
    ),
    "session_fields": (
        "benchmarks.bench_session_fields",
        "the analytics session fields in the core's summary (issue 19)",
    ),
    "failfast": (
        "benchmarks.bench_failfast",
        "the API's answers while Redis is stopped or gone, beside Redis up (issue 16)",
    ),
    "recovery": (
        "benchmarks.bench_recovery",
        "a worker cut mid-job: time to the job's end; the cost of leases (issue 16)",
    ),
}


def main(argv: list[str]) -> int:
    # `python -m benchmarks recovery --only cost`: the options after the names go to each one
    cut = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:cut] or list(BENCHES), argv[cut:]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        module, what = BENCHES[name]
        if importlib.util.find_spec(module) is None:
            print(f"\n=== {name}: {module} is missing, skipped ===", flush=True)
            failed.append(name)
            continue
        print(f"\n=== {name}: {what} ===\n$ python -m {' '.join([module, *options])}", flush=True)
        started = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", module, *options])
        print(f"=== {name}: exit {rc}, {time.perf_counter() - started:.0f} s ===", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that did not complete: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
