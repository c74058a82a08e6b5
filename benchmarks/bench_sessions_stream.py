"""The sessions answer, streamed: API memory, time to first byte and total time, per format.

    python -m benchmarks.bench_sessions_stream [--sessions 1000000] [--small 100000] [--runs 3]

Setup: one Redis, and two succeeded jobs stored through the real job store (``JobStore.create``,
``start``, ``complete_unit`` per unit, ``finish``), as a worker stores them: a synthetic result of
``--sessions`` sessions (1,000 units, one user each) and one of ``--small`` sessions (100 units),
the same rows. No worker runs: the results are written directly, so the figures are the API's
alone. The API runs as deployed (``config/gunicorn.conf.py``, gevent) with one worker process.

Measured, alternating format and job size, ``--runs`` times: ``GET /jobs/<id>/sessions`` read to
the end over one connection, for JSON (the default), NDJSON and CSV:

* peak RSS of the gunicorn worker during the request (its ``VmHWM``, reset before each request
  through ``/proc/<pid>/clear_refs``), and its RSS before the request;
* time to first byte of the body, and total time.

The claim under test: the API's memory does not grow with the number of sessions, so the peak
for the large job is close to the small job's (the ratio is printed beside each pair).
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.bench_api import spread
from devstack import local_stack
from sessionizer.jobstore import JobStore

HOST = "127.0.0.1"
FORMATS = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}
SCREENS = ["connexion", "accueil", "devis", "facture", "recherche", "deconnexion"]


def unit_sessions(user: str, n: int) -> list[dict[str, Any]]:
    """``n`` plausible sessions of one user (as ``worker.jobs`` writes them), a few hours apart."""
    rows = []
    t = 1_662_000_000
    for k in range(n):
        t += 3600 + (k * 7919) % 30_000
        duration = 60 + (k * 104_729) % 5400
        rows.append(
            {
                "user": user,
                "instance": f"instance{k % 7}",
                "start": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{k % 1000:03d}000Z",
                "end": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t + duration)) + f".{(k * 7) % 1000:03d}000Z",
                "duration_s": float(duration),
                "events": 5 + k % 200,
                "entry_screen": SCREENS[k % 6],
                "exit_screen": SCREENS[(k + 3) % 6],
                "truncated_start": False,
                "truncated_end": k == n - 1,
            }
        )
    return rows


def store_job(store: JobStore, units: int, per_unit: int) -> str:
    """A succeeded job of ``units x per_unit`` sessions, written through the job store."""
    users = [f"user{i:05d}" for i in range(units)]
    request = {
        "users": users,
        "start": "2022-09-01T00:00:00Z",
        "end": "2023-09-01T00:00:00Z",
        "method": "gap",
        "params": {"max_gap_s": 1800.0, "max_span_s": 86400.0},
        "group_by": ["user"],
    }
    job = store.create(request, deadline_s=86_400)
    store.start(job["id"], units)
    for i, user in enumerate(users):
        rows = unit_sessions(user, per_unit)
        stats = {
            "users": 1,
            "events": sum(r["events"] for r in rows),
            "invalid_events": 0,
            "noise_events": 0,
            "sessions": len(rows),
        }
        store.complete_unit(job["id"], i, 1, rows, stats)
    assert store.finish(job["id"])
    return job["id"]


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def fetch(port: int, path: str, accept: str, pid: int) -> dict[str, float]:
    """One read of ``path``: bytes, time to first body byte, total time, worker RSS before and peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = vm_kib(pid, "VmRSS")
    conn = http.client.HTTPConnection(HOST, port, timeout=600)
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Accept": accept})
    resp = conn.getresponse()
    first = resp.read1(1 << 16)
    ttfb = time.perf_counter() - t0
    size = len(first)
    while chunk := resp.read1(1 << 16):
        size += len(chunk)
    total = time.perf_counter() - t0
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{path}: HTTP {resp.status}")
    return {
        "bytes": size,
        "ttfb_ms": 1000 * ttfb,
        "total_s": total,
        "rss_before_mib": before / 1024,
        "peak_mib": vm_kib(pid, "VmHWM") / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    per_unit = 1000
    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    with local_stack(tmp, workers=0, apis=0, grace_s=5, RATE_LIMIT_PER_S="0", MAX_ACTIVE_JOBS="0") as stack:
        store = JobStore.from_url(stack.redis_url)
        t0 = time.perf_counter()
        jobs = {
            "large": store_job(store, args.sessions // per_unit, per_unit),
            "small": store_job(store, args.small // per_unit, per_unit),
        }
        print(
            f"stored {args.sessions:,} + {args.small:,} sessions through the job store in "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        port = int(stack.add_api(1, name="api").rsplit(":", 1)[1])
        (worker,) = psutil.Process(stack.api_procs[0].pid).children()
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for run in range(args.runs):
            for fmt, accept in FORMATS.items():
                for size, job_id in jobs.items():
                    r = fetch(port, f"/jobs/{job_id}/sessions", accept, worker.pid)
                    results.setdefault((fmt, size), []).append(r)
                    print(
                        f"run {run + 1} {fmt:6} {size:5}: {r['bytes'] / 2**20:7.1f} MiB, first byte "
                        f"{r['ttfb_ms']:7.1f} ms, total {r['total_s']:6.2f} s, worker RSS "
                        f"{r['rss_before_mib']:.0f} -> peak {r['peak_mib']:.0f} MiB",
                        flush=True,
                    )
        print(
            f"\nGET /jobs/<id>/sessions, gunicorn gevent worker, {args.runs} runs "
            f"(large = {args.sessions:,} sessions, small = {args.small:,}):"
        )
        for fmt in FORMATS:
            large, small = results[(fmt, "large")], results[(fmt, "small")]
            ratios = [a["peak_mib"] / b["peak_mib"] for a, b in zip(large, small)]
            for name, rs in (("large", large), ("small", small)):
                print(
                    f"  {fmt:6} {name:5}: peak RSS {spread([r['peak_mib'] for r in rs], '{:.0f}')} MiB; "
                    f"first byte {spread([r['ttfb_ms'] for r in rs])} ms; "
                    f"total {spread([r['total_s'] for r in rs], '{:.2f}')} s"
                )
            print(f"  {fmt:6} peak RSS large/small: {spread(ratios, '{:.2f}')}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
