"""Serving models side by side: gunicorn gthread (2 processes x 8 threads, the former
docker-compose setting) vs gevent (2 processes), both with ``config/gunicorn.conf.py``'s other
settings (access log, request limits), on one Redis.

    python -m benchmarks.bench_serving [--runs 3] [--held 64] [--clients 100] [--poll-seconds 5]

For each model, alternating, ``--runs`` times:
1. Held clients: ``--held`` ``Prefer: wait=60`` requests on a job that stays queued, plus as many
   connections that announce a 1000-byte body and send 10 bytes. Then 10 ``/healthz`` requests,
   one after the other, each given 3 s: how many are answered, and their latency.
2. Paced polls with nothing held: ``--clients`` pollers, ``GET /jobs/<id>`` every 100 ms each
   (the poll load of ``bench_api``): throughput, p50, p99.
No worker runs, so the job stays queued: the waits last until the run closes them.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_api import call, pollers, spread
from devstack import Stack, api_command, free_port, local_stack, wait_http
from sessionizer.jobstore import JobStore

HOST = "127.0.0.1"
ATTEMPTS, ATTEMPT_TIMEOUT_S = 10, 3.0
FUTURE = {"users": ["bench"], "start": "2998-12-31T00:00Z", "end": "2999-01-01T00:00Z", "method": "gap"}


def gthread_command(port: int) -> list[str]:
    """The same settings (config/gunicorn.conf.py: access log, limits), but 8 threads per process."""
    return [*api_command(HOST, port, 2), "--worker-class", "gthread", "--threads", "8"]


def hold(port: int, job_id: str, held: int) -> list[socket.socket]:
    socks = []
    for _ in range(held):
        s = socket.create_connection((HOST, port), timeout=10)
        s.sendall(f"GET /jobs/{job_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nPrefer: wait=60\r\n\r\n".encode())
        socks.append(s)
        s = socket.create_connection((HOST, port), timeout=10)
        s.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"users": '
        )
        socks.append(s)
    return socks


def healthz_while_held(port: int, job_id: str, held: int) -> tuple[int, list[float]]:
    socks = hold(port, job_id, held)
    time.sleep(1.0)  # let the server take them all in
    answered, latencies = 0, []
    try:
        for _ in range(ATTEMPTS):
            conn = http.client.HTTPConnection(HOST, port, timeout=ATTEMPT_TIMEOUT_S)
            t0 = time.perf_counter()
            try:
                status, _, _ = call(conn, "GET", "/healthz")
                if status == 200:
                    answered += 1
                    latencies.append(1000 * (time.perf_counter() - t0))
            except OSError:
                pass
            finally:
                conn.close()
    finally:
        for s in socks:
            s.close()
    return answered, latencies


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--held", type=int, default=64)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--poll-seconds", type=float, default=5.0)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    env = {
        "RATE_LIMIT_PER_S": "0",
        "MAX_ACTIVE_JOBS": "0",
        "MAX_WAITS_PER_KEY": str(10 * args.held),
        "MAX_WAIT_S": "60",
    }
    models = {"gthread 2x8": gthread_command, "gevent 2": lambda port: api_command(HOST, port, 2)}
    results: dict[str, dict[str, list[Any]]] = {
        m: {"answered": [], "lat": [], "rps": [], "p50": [], "p99": []} for m in models
    }
    with local_stack(tmp, workers=0, apis=0, **env) as local:  # Redis alone; each run its own API
        for run in range(args.runs):
            for name, command in models.items():
                stack = Stack(env=dict(local.env), grace_s=5)
                port = free_port()
                stack.spawn(command(port), log=tmp / f"{name.split()[0]}.log")
                try:
                    wait_http(f"http://{HOST}:{port}/healthz", timeout=60)
                    conn = http.client.HTTPConnection(HOST, port, timeout=30)
                    _, _, job = call(conn, "POST", "/jobs", FUTURE)
                    conn.close()
                    answered, lat = healthz_while_held(port, job["id"], args.held)
                    # the held waits end with their job, cancelled in the store (under gthread no
                    # thread is free to take an HTTP cancel until the waits time out)
                    JobStore.from_url(local.redis_url).cancel(job["id"])
                    time.sleep(1.0)
                    res = pollers(port, f"/jobs/{job['id']}", args.clients, args.poll_seconds, 0.1)
                finally:
                    stack.stop()
                r = results[name]
                r["answered"].append(answered)
                r["lat"].extend(lat)
                r["rps"].append(res["rps"])
                r["p50"].append(res["p50_ms"])
                r["p99"].append(res["p99_ms"])
                print(
                    f"run {run + 1} {name:12}: /healthz with {args.held} waits + {args.held} slow bodies held: "
                    f"{answered}/{ATTEMPTS} answered within {ATTEMPT_TIMEOUT_S:.0f} s"
                    + (f" (median {statistics.median(lat):.1f} ms)" if lat else "")
                    + f"; {args.clients} paced pollers: {res['rps']:.0f} req/s, p50 {res['p50_ms']:.1f} ms, "
                    f"p99 {res['p99_ms']:.1f} ms, statuses {res['statuses']}",
                    flush=True,
                )
        print()
        for name, r in results.items():
            lat = f"; latency {spread(r['lat'])} ms" if r["lat"] else ""
            print(
                f"{name:12}: /healthz answered while held "
                f"{spread([float(a) for a in r['answered']], '{:.0f}')} of {ATTEMPTS}{lat}"
            )
            print(
                f"{'':12}  polls {spread(r['rps'], '{:.0f}')} req/s; "
                f"p50 {spread(r['p50'])} ms; p99 {spread(r['p99'])} ms"
            )
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
