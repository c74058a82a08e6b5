"""Client-side scan throughput: ElasticsearchSource vs the seed tutorial's ``helpers.scan`` loop.

    python -m benchmarks.bench_scan [--events 500000] [--runs 5] [--rss-events 2000000]

Setup: the protocol test server (the ``esproto`` package) runs in *another process* with
``cache_pages=True`` and holds one index of ``--rss-events`` events of user ``romain`` plus other
users' events (ISO-8601 timestamps with offsets, as in the example answer of
``docs/elasticsearch.md``). Each scan is run once to warm the cache; after that every page (PIT or
scroll) is answered from pre-rendered response bytes, so the server's per-page cost is an HTTP
parse, a dict lookup and a socket write, and the figures are dominated by the client. "per core"
figures divide by this process's CPU time (``time.process_time``, all threads), which excludes the
server process entirely.

Compared, side by side in one run, alternating, ``--runs`` times each, on the same events:

* seed: ``helpers.scan`` (scroll, 1000 hits per page, stdlib JSON) building a Python list per
  document, exactly as ``extract_ecrans`` in the seed tutorial; also with ``size=10000``.
* ours: ``ElasticsearchSource.read_events`` (PIT + search_after, 10000 per page, orjson, straight
  into the compact accumulator), with 1 and 2 slices.

Peak memory: a fresh subprocess reads all ``--rss-events`` events of one user through
``read_events`` and reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (and its baseline
after imports).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

INDEX = "usage-events"
USER = "romain"
T0 = 1663844400000  # 2022-09-22T11:00:00Z
STEP_MS = 250  # romain's events are STEP_MS apart
OTHERS = 200_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _documents(n_user: int) -> Any:
    screens = [b"connexion", b"accueil", b"recherche", b"fiche", b"edition", b"export"]
    for i in range(n_user):
        t = T0 + i * STEP_MS
        yield (
            b'{"@timestamp":"%s","util":"romain","ecran":"%s","instance":"instance%d"}'
            % (_iso(t).encode(), screens[i % 6], i % 7)
        )
    for i in range(OTHERS):
        t = T0 + (i * 7919) % (n_user * STEP_MS)
        yield (
            b'{"@timestamp":"%s","util":"user%d","ecran":"%s","instance":"instance1"}'
            % (_iso(t).encode(), i % 50, screens[i % 6])
        )


def _serve(n_user: int, conn: Any) -> None:
    sys.path.insert(0, ".")
    from esproto import EsProtocolServer
    from worker.sources.es_load import mapping

    server = EsProtocolServer(cache_pages=True, log_limit=100, log_body_limit=0)
    server.create_index(INDEX, mapping())
    server.add_documents(INDEX, _documents(n_user))
    server.start()
    conn.send(server.url)
    conn.recv()  # block until told to stop
    server.stop()
    for err in server.handler_errors[:3]:
        print("server handler error:", err, file=sys.stderr)


def _seed_loop(url: str, lo_ms: int, hi_ms: int, size: int) -> int:
    # the seed tutorial's extract_ecrans, verbatim but for the client and the index name
    from elasticsearch import Elasticsearch, helpers

    client = Elasticsearch(url, request_timeout=30)
    date_min = datetime.fromtimestamp(lo_ms / 1000, UTC)
    date_max = datetime.fromtimestamp(hi_ms / 1000, UTC)
    query = {
        "query": {
            "bool": {
                "must": [{"terms": {"util": [USER]}}],
                "filter": [
                    {
                        "range": {
                            "@timestamp": {
                                "gte": date_min.isoformat(),
                                "lte": date_max.isoformat(),
                                "format": "strict_date_optional_time",
                            }
                        }
                    }
                ],
            }
        }
    }
    data = []
    for doc in helpers.scan(client, index=INDEX, query=query, size=size):
        doc = doc["_source"]
        elt = [doc.get("@timestamp"), doc.get("util"), doc.get("ecran"), doc.get("instance")]
        data.append(elt)
    client.close()
    return len(data)


def _ours(url: str, lo_ms: int, hi_ms: int, slices: int) -> int:
    from worker.sources.elasticsearch import ElasticsearchSource
    from worker.sources.es_client import build_client

    client = build_client(url)
    acc = ElasticsearchSource(client, INDEX, page_size=10_000, slices=slices).read_events([USER], lo_ms, hi_ms)
    client.close()
    n = acc.scanned
    assert acc.invalid == 0
    return n


def _timed(fn: Any, *args: Any) -> tuple[int, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    n = fn(*args)
    return n, time.perf_counter() - w0, time.process_time() - c0


def _rss_child(url: str, n_events: int) -> None:
    from worker.sources.elasticsearch import ElasticsearchSource
    from worker.sources.es_client import build_client

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client = build_client(url)
    t0 = time.perf_counter()
    acc = ElasticsearchSource(client, INDEX, page_size=10_000).read_events([USER], T0, T0 + n_events * STEP_MS)
    wall = time.perf_counter() - t0
    events = acc.pop_user(USER)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm = None
    try:  # Linux: VmHWM is per address space, so it cannot inherit the parent's high-water mark
        with open("/proc/self/status") as fh:
            hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    print(json.dumps({"events": len(events), "baseline_kb": base, "peak_kb": peak, "vmhwm_kb": hwm, "wall_s": wall}))


def _fmt(rates: list[float]) -> str:
    return f"min {min(rates):>10,.0f}  median {statistics.median(rates):>10,.0f}  max {max(rates):>10,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000, help="events read per timed scan")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rss-events", type=int, default=2_000_000, help="events of the user in the index")
    parser.add_argument("--rss-child", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        _rss_child(args.rss_child[0], int(args.rss_child[1]))
        return 0

    n_user = max(args.rss_events, args.events)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    t0 = time.perf_counter()
    proc = ctx.Process(target=_serve, args=(n_user, child), daemon=True)
    proc.start()
    # The server and the client each get a core of their own, so that neither's figures swing
    # with where the scheduler puts the other (on this 2-core machine, that was most of the noise).
    pinned = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    if pinned:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(proc.pid, {cores[1]})
        os.sched_setaffinity(0, {cores[0]})
    url = parent.recv()
    print(
        f"server: {n_user:,} events of {USER!r} + {OTHERS:,} others, loaded in {time.perf_counter() - t0:.1f}s "
        f"(separate process, pre-rendered pages{', server and client pinned to one core each' if pinned else ''})"
    )
    try:
        _report(url, args)
    finally:
        parent.send("stop")
        proc.join(10)
    return 0


def _report(url: str, args: argparse.Namespace) -> None:
    # first, while this process is still small: a child's ru_maxrss starts from its parent's
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scan", "--rss-child", url, str(args.rss_events)],
        capture_output=True,
        text=True,
        check=True,
    )
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    peak_mb, base_mb = rss["peak_kb"] / 1024, rss["baseline_kb"] / 1024
    print(
        f"\npeak RSS reading {rss['events']:,} events of one user through read_events: {peak_mb:.0f} MB "
        f"(baseline after imports {base_mb:.0f} MB; {rss['wall_s']:.1f}s wall); target <= 400 MB: "
        f"{'MET' if peak_mb <= 400 else 'NOT MET'}; VmHWM {(rss['vmhwm_kb'] or 0) / 1024:.0f} MB"
    )
    lo = T0 + 10_000 * STEP_MS
    hi = lo + (args.events - 1) * STEP_MS
    cases = {
        "seed helpers.scan, size=1000 (as in the seed)": (_seed_loop, url, lo, hi, 1000),
        "seed helpers.scan, size=10000": (_seed_loop, url, lo, hi, 10_000),
        "ElasticsearchSource, 1 slice": (_ours, url, lo, hi, 1),
        "ElasticsearchSource, 2 slices": (_ours, url, lo, hi, 2),
    }
    for name, (fn, *fargs) in cases.items():  # warm-up: renders and caches every page once
        n = fn(*fargs)
        assert n == args.events, (name, n)
    results: dict[str, list[tuple[int, float, float]]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (fn, *fargs) in cases.items():
            results[name].append(_timed(fn, *fargs))
    print(f"\n{args.events:,} events per scan, {args.runs} runs each (alternating)")
    cpu_medians: dict[str, float] = {}
    for name, runs in results.items():
        per_cpu = [n / c for n, _, c in runs]
        per_wall = [n / w for n, w, _ in runs]
        cpu_medians[name] = statistics.median(per_cpu)
        print(
            f"{name}\n  events/s per core (client CPU): {_fmt(per_cpu)}\n"
            f"  events/s wall clock:            {_fmt(per_wall)}"
        )
    paired = [
        (n1 / c1) / (n0 / c0)
        for (n0, _, c0), (n1, _, c1) in zip(
            results["seed helpers.scan, size=1000 (as in the seed)"], results["ElasticsearchSource, 1 slice"]
        )
    ]
    print(
        f"per-run ratio ours (1 slice) / seed, per core: min {min(paired):.2f}x  median "
        f"{statistics.median(paired):.2f}x  max {max(paired):.2f}x"
    )
    seed = cpu_medians["seed helpers.scan, size=1000 (as in the seed)"]
    seed_big = cpu_medians["seed helpers.scan, size=10000"]
    ours = cpu_medians["ElasticsearchSource, 1 slice"]
    print(
        f"\nratio (median, per core): ours / seed = {ours / seed:.2f}x ; ours / seed(size=10000) = "
        f"{ours / seed_big:.2f}x ; target >= 3x and >= 300,000 events/s: "
        f"{'MET' if ours / seed >= 3 and ours >= 300_000 else 'NOT MET'}"
    )


if __name__ == "__main__":
    sys.exit(main())
