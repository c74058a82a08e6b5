"""The seed's benchmark re-done with the async client: 100 concurrent submit-then-wait.

    python -m benchmarks.bench_client [--runs 3] [--clients 100]

The seed sent 100 identical requests at once with httpx's AsyncClient and timed them (16.2 s
synchronous, 11.1 s asynchronous). Here each of ``--clients`` asyncio tasks submits the same job
(6 users x 4 weeks of the demo events, hdbscan) through one ``sessionizer_client.AsyncClient``
and waits for it, in three ways measured side by side, alternating, each run on a new range end
(so every run starts cold). Two scenarios: identical requests sharing one computation (as in
production, and as the seed's requests), then each job its own computation (``no-cache``), so
that jobs last long enough for the ways of waiting to differ:

- ``Prefer: wait`` long polls (the client's default);
- plain polling at the service's ``Retry-After`` (2 s);
- plain polling every 0.2 s (a client in a hurry).

Reported: wall time from the first submit to the last job seen finished, and HTTP requests sent
per job (retries included), min/median/max over runs. The stack is as deployed: gunicorn with the
project's settings (gevent, 2 processes), one Celery worker (2 processes), an embedded Redis.
Limits are raised out of the way (rate limit, concurrent-jobs cap, held waits per key): this
measures waiting, not throttling.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_api import spread
from devstack import local_stack
from devstack.demo import DEMO_USERS, write_demo_events
from sessionizer_client import AsyncClient

HOST = "127.0.0.1"
MODES: dict[str, dict[str, Any]] = {
    "Prefer: wait": {"long_poll": True},
    "polling, Retry-After": {"long_poll": False},
    "polling every 0.2 s": {"long_poll": False, "poll_interval": 0.2},
}


async def submit_then_wait(
    url: str, clients: int, body: dict[str, Any], mode: dict[str, Any], fresh: bool = False
) -> tuple[float, float]:
    """(wall seconds, requests per job) for ``clients`` concurrent submit-then-wait."""
    async with AsyncClient(url, timeout=120) as client:

        async def one() -> str:
            job = await client.submit(**body, fresh=fresh)
            await job.wait(timeout=300, **mode)
            return job.status

        start = time.perf_counter()
        statuses = await asyncio.gather(*(one() for _ in range(clients)))
        wall = time.perf_counter() - start
        if set(statuses) != {"succeeded"}:
            raise RuntimeError(f"not all jobs succeeded: {statuses}")
        return wall, client.requests_sent / clients


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=100)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-client-"))
    events = write_demo_events(tmp / "events.ndjson")
    with local_stack(
        tmp,
        EVENT_SOURCE="file",
        EVENTS_PATH=str(events),
        EVENT_STORE_DIR=str(tmp / "cache"),
        RATE_LIMIT_PER_S="0",
        MAX_ACTIVE_JOBS="0",
        MAX_WAITS_PER_KEY="1000",
    ) as stack:
        url = stack.api
        base = {"users": DEMO_USERS, "start": "2022-09-05T00:00Z", "method": "hdbscan"}
        warm = asyncio.run(submit_then_wait(url, 1, {**base, "end": "2022-10-02T23:00:00Z"}, {}))  # imports, cache
        print(f"warm-up: one job in {warm[0]:.2f} s")
        for fresh in (False, True):
            scenario = (
                "fresh: each job its own computation (Cache-Control: no-cache), so jobs last longer"
                if fresh
                else "shared: the same request, one computation (as the seed)"
            )
            print(
                f"\n{args.clients} concurrent submit-then-wait (6 users x 4 weeks, hdbscan), AsyncClient, {scenario}; "
                f"{args.runs} runs, modes alternating, each run on a new range end"
            )
            results: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
            for run in range(args.runs):
                for k, (name, mode) in enumerate(MODES.items()):
                    body = {**base, "end": f"2022-10-03T{int(fresh):02d}:{run:02d}:{k:02d}Z"}
                    wall, per_job = asyncio.run(submit_then_wait(url, args.clients, body, mode, fresh))
                    results[name].append((wall, per_job))
                    print(
                        f"   run {run + 1} {name:<22} {wall:6.2f} s wall, {per_job:5.1f} requests per job", flush=True
                    )
            print(f"   {'mode':<24}{'wall s (min / median / max)':<40}requests per job (min / median / max)")
            for name, rows in results.items():
                print(
                    f"   {name:<24}{spread([w for w, _ in rows], '{:.2f}'):<40}{spread([r for _, r in rows], '{:.1f}')}"
                )
        print("(the seed: 16.2 s synchronous, 11.1 s asynchronous for its 100 requests; no job, no polling)")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
