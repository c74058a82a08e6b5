"""The job API under load, as deployed: gunicorn (2 gevent processes, as in docker-compose),
one Celery worker (2 processes), an embedded Redis, the demo events (6 users, 4 weeks).

    python -m benchmarks.bench_api [--runs 3] [--clients 100] [--poll-seconds 10] [--no-baseline]

1. The seed's benchmark re-done: ``--clients`` concurrent clients submit the same request
   (6 users x 4 weeks, hdbscan) and poll it every 0.2 s until it has finished. Reported: the wall
   time from the first submit to the last client seeing ``succeeded``, and how many scans
   (planned computations, ``sz:stats:scans``) ran. Each run shifts the range end by a second so it
   starts cold. The baseline sends ``Cache-Control: no-cache`` (one scan per client), once.
2. Poll throughput and latency: ``--clients`` pollers, each on its own keep-alive connection,
   ``GET /jobs/<id>`` of a finished job. Paced: each poller sends every 100 ms (1,000 requests/s
   offered in all), latency measured from the moment the request is sent. Saturated: no pause
   (the closed-loop maximum; with 100 clients its mean latency is 100 / throughput by Little's law).

The machine has 2 cores and the load generator shares them with the API, Redis and the worker:
it runs as 2 processes x (clients / 2) threads with a minimal raw-socket HTTP/1.1 client, and the CPU
seconds each party used during the poll runs are printed, so its share is visible rather than hidden.
The per-key rate limit stays on (its Lua script runs on every request) with a ceiling the load cannot
reach; the concurrent-jobs cap is off for the baseline's 100 fresh jobs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import redis

from devstack import local_stack
from devstack.demo import DEMO_USERS, write_demo_events

HOST = "127.0.0.1"
POLL_EVERY_S = 0.2


def call(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json", **(headers or {})} if data else dict(headers or {})
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, dict(resp.getheaders()), json.loads(raw) if raw else None


# --- 1. identical clients -------------------------------------------------------------------------
def identical_clients(port: int, clients: int, body: dict[str, Any], headers: dict[str, str]) -> tuple[float, int]:
    barrier = threading.Barrier(clients + 1)
    done_at: list[float] = []
    errors: list[str] = []
    ids: set[str] = set()
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=120)
        barrier.wait()
        status, _, job = call(conn, "POST", "/jobs", body, headers)
        if status != 202:
            errors.append(f"{status} {job}")
            return
        while job["status"] in ("queued", "running"):
            time.sleep(POLL_EVERY_S)
            _, _, job = call(conn, "GET", f"/jobs/{job['id']}")
        with lock:
            ids.add(job["id"])
            done_at.append(time.perf_counter())
            if job["status"] != "succeeded":
                errors.append(str(job))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors or len(ids) != clients:
        raise RuntimeError(f"{len(errors)} clients failed, {len(ids)} job ids: {errors[:3]}")
    return max(done_at) - start, len(ids)


# --- 2. pollers -----------------------------------------------------------------------------------
def _poller_process(port: int, path: str, threads: int, seconds: float, every: float | None, out: Any) -> None:
    latencies: list[float] = []
    lock = threading.Lock()
    statuses: dict[int, int] = {}
    start_at = time.perf_counter() + 0.5

    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()

    def poller(k: int) -> None:
        # A minimal keep-alive HTTP/1.1 client (one pre-built request, Content-Length framing):
        # http.client costs several times more CPU per request, CPU the API would not get.
        sock = socket.create_connection((HOST, port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mine: list[float] = []
        codes: dict[int, int] = {}
        # spread the pollers' phases over the interval, so the offered load is smooth
        nxt = start_at + (every * k / threads if every else 0)
        end = start_at + seconds
        buf = b""
        while True:
            now = time.perf_counter()
            if every:
                if nxt > now:
                    time.sleep(nxt - now)
                nxt += every
            sent = time.perf_counter()
            if sent >= end:
                break
            sock.sendall(request)
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = buf[:head_end]
                    i = head.lower().find(b"content-length:")
                    j = head.find(b"\r\n", i)
                    size = int(head[i + 15 : j if j >= 0 else len(head)]) if i >= 0 else 0
                    if len(buf) >= head_end + 4 + size:
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                buf += chunk
            mine.append(time.perf_counter() - sent)
            status = int(buf[9:12])
            codes[status] = codes.get(status, 0) + 1
            buf = buf[head_end + 4 + size :]
        sock.close()
        with lock:
            latencies.extend(mine)
            for c, n in codes.items():
                statuses[c] = statuses.get(c, 0) + n

    ts = [threading.Thread(target=poller, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((latencies, statuses))


def pollers(port: int, path: str, clients: int, seconds: float, every: float | None) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_poller_process, args=(port, path, clients // 2, seconds, every, q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    gen_cpu = 0.0
    for p in procs:
        p.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    statuses: dict[int, int] = {}
    for _, st in results:
        for c, n in st.items():
            statuses[c] = statuses.get(c, 0) + n
    n = len(latencies)
    return {
        "rps": n / seconds,
        "p50_ms": 1000 * latencies[n // 2],
        "p99_ms": 1000 * latencies[int(n * 0.99)],
        "max_ms": 1000 * latencies[-1],
        "statuses": statuses,
        "gen_cpu": gen_cpu,
    }


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"min {fmt.format(low)} / median {fmt.format(mid)} / max {fmt.format(high)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--poll-seconds", type=float, default=10.0)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    events = write_demo_events(tmp / "events.ndjson")
    # as in docker-compose: gunicorn with config/gunicorn.conf.py (2 gevent processes), access log on
    with local_stack(
        tmp,
        api_args=["--access-logfile", str(tmp / "access.log")],
        EVENT_SOURCE="file",
        EVENTS_PATH=str(events),
        EVENT_STORE_DIR=str(tmp / "cache"),
        RATE_LIMIT_PER_S="1000000",
        RATE_LIMIT_BURST="1000000",
        MAX_ACTIVE_JOBS="0",
    ) as stack:
        server, worker, api = stack.redis, stack.workers[0], stack.api_procs[0]
        port = int(stack.api.rsplit(":", 1)[1])
        r = redis.Redis.from_url(server.url)
        base = {"users": DEMO_USERS, "start": "2022-09-05T00:00Z", "method": "hdbscan"}
        conn = http.client.HTTPConnection(HOST, port, timeout=120)
        warm = {**base, "end": "2022-10-02T23:00:00Z"}
        call(conn, "POST", "/jobs", warm, {"Prefer": "wait=60"})  # partition cache built, imports done

        print(
            f"1. {args.clients} clients submit the same request (6 users x 4 weeks, hdbscan), poll every "
            f"{POLL_EVERY_S} s until done; {args.runs} runs, each on a new range end"
        )
        walls, scans = [], []
        for run in range(args.runs):
            body = {**base, "end": f"2022-10-03T00:00:{run:02d}Z"}
            before = int(r.get("sz:stats:scans") or 0)
            wall, jobs = identical_clients(port, args.clients, body, {})
            walls.append(wall)
            scans.append(int(r.get("sz:stats:scans") or 0) - before)
            print(f"   run {run + 1}: {wall:5.2f} s wall, {scans[-1]} scan(s), {jobs} distinct job ids")
        print(
            f"   shared results: wall {spread(walls, '{:.2f}')} s; "
            f"scans per run {spread([float(s) for s in scans], '{:.0f}')}"
        )
        if not args.no_baseline:
            body = {**base, "end": "2022-10-03T00:01:00Z"}
            before = int(r.get("sz:stats:scans") or 0)
            wall, _ = identical_clients(port, args.clients, body, {"Cache-Control": "no-cache"})
            print(
                f"   baseline, Cache-Control: no-cache (every client scans): {wall:.2f} s wall, "
                f"{int(r.get('sz:stats:scans') or 0) - before} scans (1 run)"
            )
        print("   (the seed: 16.2 s synchronous, 11.1 s asynchronous for its 100 requests)")

        conn.close()
        conn = http.client.HTTPConnection(HOST, port, timeout=120)  # the first one idled past gunicorn's keep-alive
        _, _, job = call(conn, "POST", "/jobs", warm)
        path = f"/jobs/{job['id']}"
        conn.close()
        parties = {
            "api (gunicorn)": tree(api.pid),
            "redis": [psutil.Process(server.proc.pid)],
            "worker": tree(worker.pid),
        }
        for label, every in (("paced, 10 req/s per poller (1,000 req/s offered)", 0.1), ("saturated, no pause", None)):
            print(
                f"2. {args.clients} pollers, GET {path.split('/')[1]}/<id>, {label}; "
                f"{args.runs} runs of {args.poll_seconds:.0f} s"
            )
            rps, p50, p99 = [], [], []
            for run in range(args.runs):
                cpu0 = {k: cpu_seconds(v) for k, v in parties.items()}
                gen0 = psutil.cpu_times()
                wall0 = time.perf_counter()
                res = pollers(port, path, args.clients, args.poll_seconds, every)
                wall = time.perf_counter() - wall0
                used = {k: cpu_seconds(v) - cpu0[k] for k, v in parties.items()}
                total = psutil.cpu_times()
                busy = sum(getattr(total, f) - getattr(gen0, f) for f in ("user", "system", "nice", "irq", "softirq"))
                used["load generator + rest"] = max(0.0, busy - sum(used.values()))
                rps.append(res["rps"])
                p50.append(res["p50_ms"])
                p99.append(res["p99_ms"])
                ok = res["statuses"].get(200, 0) == sum(res["statuses"].values())
                print(
                    f"   run {run + 1}: {res['rps']:7.0f} req/s, p50 {res['p50_ms']:5.1f} ms, "
                    f"p99 {res['p99_ms']:6.1f} ms, max {res['max_ms']:6.1f} ms, "
                    f"statuses {res['statuses']}{'' if ok else '  <- not all 200'}; CPU s over "
                    f"{wall:.1f} s wall: " + ", ".join(f"{k} {v:.1f}" for k, v in used.items())
                )
            print(f"   throughput {spread(rps, '{:.0f}')} req/s; p50 {spread(p50)} ms; p99 {spread(p99)} ms")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
