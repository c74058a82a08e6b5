"""Whole jobs against the kernels alone, and what an event store saves (issue 15).

    python -m benchmarks.bench_job [--runs 3] [--es-runs 3] [--parts files,memory,es] [--cache DIR]

The stack is the real one, as ``make demo`` runs it: an embedded Redis, the API under gunicorn
(2 gevent processes) over TCP, and ONE Celery worker with ``--concurrency 2`` (prefork: 2 worker
processes). Jobs go over HTTP through ``sessionizer_client`` with ``Cache-Control: no-cache`` (each
job computes; no shared result is reused) and are timed from submit to ``succeeded`` by the
service's own ``submitted_at``/``finished_at`` (the client's wall time, polled with ``Prefer:
wait``, is printed beside it). "Cold" removes ``EVENT_STORE_DIR`` and ``EVENTS_CACHE_DIR`` (the
file source's partitions) before the job; "warm" runs again with them present. On code without the
event store ``EVENT_STORE_DIR`` has no effect, so the same command measures the old path.

files   500 users x 10,000 events over 13 weeks (5,000,000 events; ``benchmarks.workloads``
        families thinned to 10,000 events each, in 13 weekly NDJSON files), ``gap`` and
        ``hdbscan``, cold and warm; side by side in the same run, in this process: one
        ``orjson.loads`` pass over the files, and the kernels alone (``label_sessions`` +
        ``summarize_sessions`` of every user, from the same per-user arrays). Then the store's
        size on disk against the NDJSON's.
memory  one user of 2,000,000 events over 13 weeks (``hdbscan``), its unit run by a fresh
        ``--pool solo`` worker (the unit runs in that process): its ``ru_maxrss`` (``wait4``) and
        ``VmHWM``, cold and warm; it is measured first, while this process is small.
es      ``esproto`` in another process (rendering every page, no page cache), 200 users x 5,000
        events over 8 weeks of 2024 (all settled) plus a 9th week: cold, the same job again, and
        the range extended by the 9th week; wall time and the documents the server sent.

Generated inputs are kept in ``--cache`` (default ``/var/tmp/sessionizer-bench``), outside the
repository, and reused; everything a run writes (Redis, store, logs) goes to a folder there that
is removed at the end.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import resource
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil

from benchmarks.bench_api import spread
from benchmarks.workloads import EPOCH_MS, FAMILIES, WEEK_MS, Timeline, generate, write_ndjson
from devstack import Stack, api_command, free_port, local_stack, wait_http, worker_command

HOST = "127.0.0.1"
DATA_VERSION = "job-v1"  # bump when the generated inputs change: they are regenerated
INDEX = "usage-events"
FILES = {"users": 500, "events": 10_000, "weeks": 13}
HEAVY = {"user": "heavy-user", "events": 2_000_000, "weeks": 13}
ES = {"users": 200, "events": 5_000, "weeks": 8, "extra_events": 625}  # + a 9th week for the extension


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


# --- inputs (generated once into the cache) ---------------------------------------------------------


def _thinned(u: int, weeks: int, windows: list[tuple[int, int, int]]) -> Timeline:
    """User ``u``'s timeline of a ``workloads`` family, keeping ``k`` random events of each
    ``(lo_ms, hi_ms, k)`` window: the sessions keep their layout, with fewer events in them."""
    family = FAMILIES[u % len(FAMILIES)]
    tl = generate(family, weeks=weeks, seed=u, user=f"u{u:03d}-{family}")
    rng = np.random.default_rng([u, 15])
    keep = []
    for lo, hi, k in windows:
        inside = np.flatnonzero((tl.t_ms >= lo) & (tl.t_ms < hi))
        keep.append(np.sort(rng.choice(inside, k, replace=False)))
    idx = np.concatenate(keep)
    return Timeline(tl.user, tl.t_ms[idx], tl.screen[idx], tl.instance[idx], tl.truth[idx], tl.instance_names)


def _week(tl: Timeline, w: int) -> Timeline:
    m = (tl.t_ms >= EPOCH_MS + w * WEEK_MS) & (tl.t_ms < EPOCH_MS + (w + 1) * WEEK_MS)
    return Timeline(tl.user, tl.t_ms[m], tl.screen[m], tl.instance[m], tl.truth[m], tl.instance_names)


_TIMELINES: list[Timeline] = []  # what the forked writers write


def _write_week(args: tuple[Path, int]) -> int:
    folder, w = args
    return write_ndjson(folder / f"week-{w:02d}.ndjson", [_week(tl, w) for tl in _TIMELINES])


@contextmanager
def _building(target: Path) -> Iterator[Path]:
    """A folder written under a temporary name and renamed into place once complete."""
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def files_input(cache: Path) -> Path:
    """13 weekly NDJSON files of every user, and ``arrays.npz`` (the same events per user)."""
    target = cache / DATA_VERSION / "files"
    if target.exists():
        return target
    print(f"generating {FILES['users'] * FILES['events']:,} events into {target} (once) ...", flush=True)
    span = (EPOCH_MS, EPOCH_MS + FILES["weeks"] * WEEK_MS, FILES["events"])
    _TIMELINES[:] = [_thinned(u, FILES["weeks"], [span]) for u in range(FILES["users"])]
    with _building(target) as tmp:
        with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
            written = sum(pool.map(_write_week, [(tmp, w) for w in range(FILES["weeks"])]))
        assert written == FILES["users"] * FILES["events"], written
        np.savez(
            tmp / "arrays.npz",
            users=np.array([tl.user for tl in _TIMELINES]),
            t_ms=np.concatenate([tl.t_ms for tl in _TIMELINES]),
            screen=np.concatenate([tl.screen for tl in _TIMELINES]),
            instance=np.concatenate([tl.instance for tl in _TIMELINES]),
        )
    _TIMELINES.clear()
    return target


def heavy_input(cache: Path) -> Path:
    """One machine-like account of 2,000,000 events over 13 weeks: runs of about 2,000 events
    about 1 s apart, separated by 30 min to 3 h, scaled to fill the weeks."""
    target = cache / DATA_VERSION / "heavy"
    if target.exists():
        return target
    print(f"generating {HEAVY['events']:,} events of one user into {target} (once) ...", flush=True)
    n = HEAVY["events"]
    rng = np.random.default_rng(2_000_000)
    gaps = rng.exponential(1_000.0, n)
    breaks = rng.random(n) < 1 / 2_000
    gaps[breaks] += rng.uniform(1_800_000, 10_800_000, int(breaks.sum()))
    gaps[0] = 0.0
    cum = np.cumsum(gaps)
    t = EPOCH_MS + (cum * ((HEAVY["weeks"] * WEEK_MS - 1) / cum[-1])).astype(np.int64)
    tl = Timeline(
        HEAVY["user"],
        t,
        rng.integers(0, 8, n).astype(np.int32),
        np.zeros(n, np.int32),
        np.zeros(n, np.int64),
        ("instance0",),
    )
    with _building(target) as tmp:
        write_ndjson(tmp / "events.ndjson", [tl])
    return target


def es_input(cache: Path) -> Path:
    """The Elasticsearch documents: 5,000 events per user over 8 weeks, 625 more in a 9th."""
    target = cache / DATA_VERSION / "es"
    if target.exists():
        return target / "events.ndjson"
    print(f"generating the Elasticsearch documents into {target} (once) ...", flush=True)
    cut = EPOCH_MS + ES["weeks"] * WEEK_MS
    windows = [(EPOCH_MS, cut, ES["events"]), (cut, cut + WEEK_MS, ES["extra_events"])]
    with _building(target) as tmp:
        write_ndjson(tmp / "events.ndjson", [_thinned(u, ES["weeks"] + 1, windows) for u in range(ES["users"])])
    return target / "events.ndjson"


# --- in one process: the orjson pass and the kernels --------------------------------------------


def orjson_pass(files: list[Path]) -> tuple[float, float, int]:
    """Every line parsed once, as the file source reads a bucket (4 MB of lines, ``map(loads)``):
    (wall s, CPU s, lines)."""
    loads, n = orjson.loads, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for path in files:
        with open(path, "rb") as fh:
            while lines := fh.readlines(4 << 20):
                collections.deque(map(loads, lines), maxlen=0)
                n += len(lines)
    return time.perf_counter() - t0, time.process_time() - c0, n


def kernels_pass(arrays: dict[str, np.ndarray], method: str, lo_ms: int, hi_ms: int) -> tuple[float, float, int]:
    """``label_sessions`` + ``summarize_sessions`` for every user, as a unit calls them:
    (wall s, CPU s, sessions)."""
    from worker.core import label_and_cut, method_params, read_margin_ms, summarize_sessions

    params = method_params(method, None)
    margin = read_margin_ms(method, params)
    bounds = arrays["bounds"]
    sessions = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for a, b in zip(bounds[:-1], bounds[1:]):
        t = arrays["t_ms"][a:b]
        labels, cut = label_and_cut(t, method, params)
        table = summarize_sessions(
            t,
            labels,
            arrays["screen"][a:b],
            arrays["instance"][a:b],
            read_start_ms=lo_ms - margin,
            read_end_ms=hi_ms + margin,
            method=method,
            params=params,
            cut=cut,
        )
        sessions += len(table.start_ms)
    return time.perf_counter() - t0, time.process_time() - c0, sessions


# --- the stack ---------------------------------------------------------------------------------------


def disk_bytes(path: Path) -> int:
    """Bytes ``path`` takes on disk (allocated blocks), 0 when absent."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class BenchStack:
    """Redis (given), the API under gunicorn, and workers spawned on demand; ``env`` is theirs."""

    def __init__(self, run_dir: Path, redis_url: str, env: dict[str, str]) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.stack = Stack()
        for k in [k for k in self.stack.env if k.startswith(("ELASTICSEARCH_", "SESSIONIZER_", "EVENT"))]:
            del self.stack.env[k]
        self.stack.env.update(
            {
                "REDIS_URL": redis_url,
                "RATE_LIMIT_PER_S": "0",
                "MAX_ACTIVE_JOBS": "0",
                "PYTHONUNBUFFERED": "1",
                "SESSIONIZER_VAR_DIR": str(run_dir / "var"),
                "EVENT_STORE_DIR": str(run_dir / "store"),
                "EVENTS_CACHE_DIR": str(run_dir / "cache"),
                **env,
            }
        )
        self.store_dirs = [Path(self.stack.env["EVENT_STORE_DIR"]), Path(self.stack.env["EVENTS_CACHE_DIR"])]
        self.url = ""
        self.workers: list[int] = []

    def __enter__(self) -> BenchStack:
        port = free_port()
        self.url = f"http://{HOST}:{port}"
        try:
            self.stack.spawn(api_command(HOST, port, workers=2), log=self.run_dir / "api.log")
            wait_http(f"{self.url}/healthz", timeout=60)
        except BaseException:
            self.stack.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.stop()

    def worker(self, args: list[str], name: str) -> Any:
        """A Celery worker, once it is ready."""
        log = self.run_dir / f"{name}.log"
        proc = self.stack.spawn(args, log=log)
        deadline = time.monotonic() + 60
        while b" ready." not in (log.read_bytes() if log.exists() else b""):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.workers.append(proc.pid)
        return proc

    def worker_cpu_s(self) -> float:
        """CPU seconds used so far by the workers and their pool processes (a figure the other
        loads of a shared machine change less than wall time)."""
        total = 0.0
        for pid in self.workers:
            try:
                root = psutil.Process(pid)
                for p in [root, *root.children(recursive=True)]:
                    cpu = p.cpu_times()
                    total += cpu.user + cpu.system
            except psutil.NoSuchProcess:
                pass
        return total

    def clear_store(self) -> None:
        for d in self.store_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def store_bytes(self) -> list[int]:
        return [disk_bytes(d) for d in self.store_dirs]

    def job(self, users: list[str], start: str, end: str, method: str) -> dict[str, Any]:
        """Submit (no-cache), wait for ``succeeded``; the job's JSON plus ``server_s``/``client_s``."""
        from sessionizer_client import Client

        cpu0 = self.worker_cpu_s()
        with Client(self.url, timeout=60) as client:
            t0 = time.perf_counter()
            job = client.submit(users, start, end, method=method, fresh=True)
            job.wait(timeout=1800)
            client_s = time.perf_counter() - t0
            data = {**job.data, "stats": job.stats(), "worker_cpu_s": self.worker_cpu_s() - cpu0}
        data["server_s"] = (
            datetime.fromisoformat(data["finished_at"]) - datetime.fromisoformat(data["submitted_at"])
        ).total_seconds()
        data["client_s"] = client_s
        return data


def _job_line(label: str, job: dict[str, Any], extra: str = "") -> str:
    p = job["progress"]
    source = p.get("events_from_source")
    return (
        f"   {label:<22} {job['server_s']:7.2f} s (client {job['client_s']:6.2f} s, workers' CPU "
        f"{job['worker_cpu_s']:6.1f} s)  "
        f"events_scanned {p['events_scanned']:>11,}  events_from_source "
        f"{'n/a' if source is None else f'{source:,}':>11}  stats.events {job['stats']['events']:,}{extra}"
    )


def _load() -> str:
    """The 1-minute load average: on a shared machine, what the figures were measured under."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


# --- the parts ---------------------------------------------------------------------------------------


def part_memory(cache: Path, run_dir: Path, redis_url: str) -> None:
    folder = heavy_input(cache)
    print(
        f"\nmemory: one unit of one user with {HEAVY['events']:,} events (hdbscan, 13 weeks), "
        "run by a fresh `--pool solo` worker each time",
        flush=True,
    )
    end = _iso(EPOCH_MS + HEAVY["weeks"] * WEEK_MS)
    with BenchStack(run_dir / "memory", redis_url, {"EVENT_SOURCE": "file", "EVENTS_PATH": str(folder)}) as bs:
        bs.clear_store()
        for phase in ("cold", "warm"):
            proc = bs.worker(worker_command(1, name=f"unit-{phase}") + ["--pool", "solo"], f"unit-{phase}")
            base = _vmhwm_kb(proc.pid)
            job = bs.job([HEAVY["user"]], _iso(EPOCH_MS), end, "hdbscan")
            hwm = _vmhwm_kb(proc.pid)
            bs.stack.procs.remove(proc)
            os.kill(proc.pid, signal.SIGTERM)
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0
            rss = usage.ru_maxrss * 1024
            print(_job_line(f"unit {phase}", job))
            print(
                f"      peak ru_maxrss {_mb(rss)}, VmHWM {_mb(hwm * 1024)} (after start-up {_mb(base * 1024)}); "
                f"goal <= 300 MB: {'MET' if rss <= 300 * 2**20 else 'NOT MET'}",
                flush=True,
            )


def _vmhwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


def part_files(cache: Path, run_dir: Path, redis_url: str, runs: int) -> None:
    folder = files_input(cache)
    files = sorted(folder.glob("*.ndjson"))
    nd_bytes = sum(disk_bytes(f) for f in files)
    with np.load(folder / "arrays.npz") as z:
        arrays = {k: z[k] for k in ("users", "t_ms", "screen", "instance")}
    arrays["bounds"] = np.arange(FILES["users"] + 1) * FILES["events"]
    users = arrays["users"].tolist()
    lo, hi = EPOCH_MS, EPOCH_MS + FILES["weeks"] * WEEK_MS
    start, end = _iso(lo), _iso(hi)
    total = FILES["users"] * FILES["events"]
    print(
        f"\nfiles: {len(users)} users x {FILES['events']:,} events = {total:,} events over {FILES['weeks']} weeks, "
        f"{len(files)} NDJSON files, {_mb(nd_bytes)}; one Celery worker, concurrency 2; {runs} runs",
        flush=True,
    )
    t: dict[str, list[float]] = collections.defaultdict(list)
    cpu_s: dict[str, list[float]] = collections.defaultdict(list)  # the same, in CPU seconds
    sizes: list[list[int]] = []
    with BenchStack(run_dir / "files", redis_url, {"EVENT_SOURCE": "file", "EVENTS_PATH": str(folder)}) as bs:
        bs.worker(worker_command(2, name="bench"), "worker")
        for run in range(1, runs + 1):
            print(f" run {run} (load average {_load()})", flush=True)
            secs, cpu, n = orjson_pass(files)
            assert n == total, n
            t["orjson"].append(secs)
            cpu_s["orjson"].append(cpu)
            print(f"   {'orjson.loads pass':<22} {secs:7.2f} s (CPU {cpu:.2f} s; {n:,} lines, one process)", flush=True)
            for method in ("gap", "hdbscan"):
                secs, cpu, k = kernels_pass(arrays, method, lo, hi)
                t[f"kernels {method}"].append(secs)
                cpu_s[f"kernels {method}"].append(cpu)
                print(
                    f"   {'kernels ' + method:<22} {secs:7.2f} s (CPU {cpu:.2f} s; {k:,} sessions, one process)",
                    flush=True,
                )
            for method in ("gap", "hdbscan"):
                bs.clear_store()
                for phase in ("cold", "warm"):
                    job = bs.job(users, start, end, method)
                    assert job["stats"]["events"] == total, job["stats"]
                    t[f"{method} {phase}"].append(job["server_s"])
                    cpu_s[f"{method} {phase}"].append(job["worker_cpu_s"])
                    print(_job_line(f"job {method} {phase}", job), flush=True)
                sizes.append(bs.store_bytes())
    goals = {"gap warm": "<= 3 s", "hdbscan warm": "<= 4 s"}
    print(f"\n files, {runs} runs, seconds (load average now {_load()})")
    for name in ("orjson", "kernels gap", "kernels hdbscan", "gap cold", "gap warm", "hdbscan cold", "hdbscan warm"):
        label = {"orjson": "orjson.loads pass"}.get(name, name if name.startswith("kernels") else f"job {name}")
        goal = goals.get(name, "")
        met = "" if not goal else ("MET" if statistics.median(t[name]) <= float(goal.split()[1]) else "NOT MET")
        print(f"   {label:<34}{spread(t[name], '{:.2f}'):<46}{('goal ' + goal + ': ' + met) if goal else ''}")
    print("  ratios, per run (min / median / max)")
    for method in ("gap", "hdbscan"):
        warm = [w / k for w, k in zip(t[f"{method} warm"], t[f"kernels {method}"])]
        cold = [c / o for c, o in zip(t[f"{method} cold"], t["orjson"])]
        print(f"   {method + ' warm / kernels':<34}{spread(warm, '{:.1f}x')}")
        print(
            f"   {method + ' cold / orjson pass':<34}{spread(cold, '{:.2f}x'):<46}goal <= 1.5x: "
            f"{'MET' if statistics.median(cold) <= 1.5 else 'NOT MET'}"
        )
    print(
        "  the same in CPU seconds (the workers' processes; this process for the passes), which a shared "
        "machine's other loads change less"
    )
    for method in ("gap", "hdbscan"):
        warm = [w / k for w, k in zip(cpu_s[f"{method} warm"], cpu_s[f"kernels {method}"])]
        cold = [c / o for c, o in zip(cpu_s[f"{method} cold"], cpu_s["orjson"])]
        print(f"   {method + ' warm / kernels, CPU':<34}{spread(warm, '{:.1f}x')}")
        print(f"   {method + ' cold / orjson pass, CPU':<34}{spread(cold, '{:.2f}x')}")
    store, partitions = sizes[-1]
    print(
        f"  on disk: NDJSON {_mb(nd_bytes)}; EVENT_STORE_DIR {_mb(store)} ({store / nd_bytes:.2f}x); "
        f"EVENTS_CACHE_DIR (partitions) {_mb(partitions)} ({partitions / nd_bytes:.2f}x); "
        f"goal: the store <= 0.5x: {'MET' if 0 < store <= nd_bytes / 2 else 'NOT MET'}",
        flush=True,
    )


# HOOK (issue15-es): esproto is gaining a counter of the documents it sends. Until it lands,
# _serve_es counts them itself by wrapping the page renderer (every hit of every _search and
# _scroll page goes through it); once the counter exists, read it in _es_counters instead.
_SENT = {"documents": 0}


def _serve_es(path: str, conn: Any) -> None:
    import threading

    from esproto import EsProtocolServer
    from esproto.search import _SearchRoutes
    from worker.sources.es_load import mapping

    page, lock = _SearchRoutes._page, threading.Lock()

    def counted(
        self: Any, head: dict, idx: Any, slots: Any, keys: Any, sort: Any, start: int, size: int, req: dict, ctx: Any
    ) -> bytes:
        with lock:
            _SENT["documents"] += max(0, min(start + size, len(slots)) - start)
        return page(self, head, idx, slots, keys, sort, start, size, req, ctx)

    _SearchRoutes._page = counted  # type: ignore[method-assign]
    server = EsProtocolServer(log_limit=1_000_000, log_body_limit=0)
    server.create_index(INDEX, mapping())
    with open(path, "rb") as fh:
        server.add_documents(INDEX, (line.rstrip(b"\n") for line in fh))
    server.start()
    conn.send(server.url)
    while conn.recv() == "count":
        conn.send(_es_counters(server))
    server.stop()


def _es_counters(server: Any) -> dict[str, int]:
    return {
        "documents": _SENT["documents"],
        "searches": len(server.requests(path_contains="_search")),
        "cpu_s": time.process_time(),
    }


def part_es(cache: Path, run_dir: Path, redis_url: str, runs: int) -> None:
    path = es_input(cache)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    t0 = time.perf_counter()
    proc = ctx.Process(target=_serve_es, args=(str(path), child), daemon=True)
    proc.start()
    url = parent.recv()
    users = [f"u{u:03d}-{FAMILIES[u % len(FAMILIES)]}" for u in range(ES["users"])]
    n8, n9 = ES["users"] * ES["events"], ES["users"] * ES["extra_events"]
    print(
        f"\nelasticsearch (esproto, another process; loaded in {time.perf_counter() - t0:.0f} s): {len(users)} users x "
        f"{ES['events']:,} events over {ES['weeks']} settled weeks ({n8:,}) + {n9:,} in a 9th week; hdbscan; "
        f"one Celery worker, concurrency 2; {runs} runs",
        flush=True,
    )
    start = _iso(EPOCH_MS)
    end8, end9 = _iso(EPOCH_MS + ES["weeks"] * WEEK_MS), _iso(EPOCH_MS + (ES["weeks"] + 1) * WEEK_MS)
    cases = {"cold": end8, "again (no-cache)": end8, "extended 1 week": end9}
    t: dict[str, list[float]] = collections.defaultdict(list)
    docs: dict[str, list[float]] = collections.defaultdict(list)
    env = {"EVENT_SOURCE": "elasticsearch", "ELASTICSEARCH_URL": url, "ELASTICSEARCH_INDEX": INDEX}
    try:
        with BenchStack(run_dir / "es", redis_url, env) as bs:
            bs.worker(worker_command(2, name="bench-es"), "worker-es")
            for run in range(1, runs + 1):
                print(f" run {run} (load average {_load()})", flush=True)
                bs.clear_store()
                for name, end in cases.items():
                    parent.send("count")
                    before = parent.recv()
                    job = bs.job(users, start, end, "hdbscan")
                    parent.send("count")
                    after = parent.recv()
                    sent, searches = after["documents"] - before["documents"], after["searches"] - before["searches"]
                    server_cpu = after["cpu_s"] - before["cpu_s"]
                    t[name].append(job["server_s"])
                    docs[name].append(sent)
                    print(
                        _job_line(
                            name,
                            job,
                            f"  sent {sent:,} documents in {searches} _search requests (server CPU {server_cpu:.1f} s)",
                        ),
                        flush=True,
                    )
            store = bs.store_bytes()[0]
    finally:
        parent.send("stop")
        proc.join(30)
    print(f"\n elasticsearch, {runs} runs (load average now {_load()}): seconds; documents sent")
    goals = {
        "again (no-cache)": "goal 0 (the verification aggregation only)",
        "extended 1 week": f"goal about {n9:,} (the new week) + the read margin",
    }
    for name in cases:
        print(f"   {name:<20}{spread(t[name], '{:.2f}'):<44}{spread(docs[name], '{:,.0f}'):<50}{goals.get(name, '')}")
    print(f"  EVENT_STORE_DIR after the runs: {_mb(store)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--es-runs", type=int, default=3)
    ap.add_argument("--parts", default="files,memory,es", help="comma-separated: files, memory, es")
    ap.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("SESSIONIZER_BENCH_CACHE", "/var/tmp/sessionizer-bench"))
    )
    ap.add_argument("--keep", action="store_true", help="keep the run folder (logs, store) for a look")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    if parts - {"files", "memory", "es"}:
        ap.error(f"unknown part(s): {', '.join(sorted(parts - {'files', 'memory', 'es'}))}")
    run_dir = args.cache / f"run-{os.getpid()}"
    run_dir.mkdir(parents=True)
    print(f"cache {args.cache}; run folder {run_dir}; {os.cpu_count()} cores", flush=True)
    started = time.perf_counter()
    try:
        with local_stack(run_dir, workers=0, apis=0) as stack:  # a Redis alone: each part starts its workers
            redis_server = stack.redis
            if "memory" in parts:  # first: a child's ru_maxrss can start from its parent's
                part_memory(args.cache, run_dir, redis_server.url)
            if "files" in parts:
                part_files(args.cache, run_dir, redis_server.url, args.runs)
            if "es" in parts:
                part_es(args.cache, run_dir, redis_server.url, args.es_runs)
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(
        f"\nbench_job: {time.perf_counter() - started:.0f} s; this process peaked at "
        f"{_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
