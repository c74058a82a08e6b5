"""While Redis is away, how fast does the API answer? (issue 16: ``/healthz`` within 1 s, every
``/jobs`` route a 503 within 2 s, where it took 21 s before.)

    python -m benchmarks failfast [--rounds N]

A real stack (Redis, the API under gunicorn; no worker: the API alone is timed) on loopback. Each round times, side by
side, the same requests with Redis up, with Redis stopped (SIGSTOP: the kernel still accepts its
connections, nothing answers, the worst case) and with Redis gone (connections refused). The
tests check what the answers are (tests/test_failfast.py); the times are measured here, because
these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import time
from collections.abc import Callable

import httpx

from devstack import local_stack

BODY = {"users": ["romain"], "start": "2022-09-20T00:00Z", "end": "2022-10-01T00:00Z"}
ROUTES = [
    ("GET", "/healthz"),
    ("GET", "/jobs"),
    ("POST", "/jobs"),
    ("GET", "/jobs/00000000-0000-4000-8000-000000000000"),
]
BOUNDS = {"/healthz": 1.0}  # the bounds, in s; every other route: 2 s
STATES = ("up", "stopped", "refused")


def timed(client: httpx.Client, method: str, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    resp = client.request(method, path, json=BODY if method == "POST" else None)
    return resp.status_code, time.perf_counter() - started


def fmt(xs: list[float]) -> str:
    return f"{min(xs) * 1000:8.1f} {statistics.median(xs) * 1000:8.1f} {max(xs) * 1000:8.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every state (default 5)")
    args = parser.parse_args(argv)
    times: dict[tuple[str, str], list[float]] = {(s, f"{m} {p}"): [] for s in STATES for m, p in ROUTES}
    statuses: dict[tuple[str, str], set[int]] = {k: set() for k in times}
    with local_stack(workers=0, apis=1) as stack:  # the API alone: no worker competes for the cores
        redis = stack.redis
        with httpx.Client(base_url=stack.api, timeout=60) as client:

            def measure(state: str) -> None:
                for method, path in ROUTES:
                    status, took = timed(client, method, path)
                    times[(state, f"{method} {path}")].append(took)
                    statuses[(state, f"{method} {path}")].add(status)

            def signal_redis(sig: int) -> Callable[[], None]:
                def send() -> None:  # the pid of now: "refused" starts a new redis-server
                    assert redis.proc is not None
                    os.kill(redis.proc.pid, sig)

                return send

            actions: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
                "up": (lambda: None, lambda: None),
                "stopped": (signal_redis(signal.SIGSTOP), signal_redis(signal.SIGCONT)),
                "refused": (redis.stop, lambda: None if redis.start() else None),
            }
            for _ in range(args.rounds):
                for state in STATES:  # alternating, so that the machine's noise falls on all three
                    before, after = actions[state]
                    before()
                    try:
                        measure(state)
                    finally:
                        after()
                    deadline = time.monotonic() + 30
                    while client.get("/healthz").status_code != 200:  # back before the next state
                        if time.monotonic() > deadline:
                            raise RuntimeError("the API did not recover once Redis was back")
                        time.sleep(0.1)
    print(f"API answer times, {args.rounds} rounds (ms: min median max; the issue's bound; statuses seen)")
    for (state, route), xs in times.items():
        bound = BOUNDS.get(route.split(" ", 1)[1], 2.0)
        ok = "within" if max(xs) <= bound else "OVER"
        codes = ",".join(str(c) for c in sorted(statuses[(state, route)]))
        print(f"  {state:8s} {route:50s} {fmt(xs)}   {ok} {bound:.0f} s   {codes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
