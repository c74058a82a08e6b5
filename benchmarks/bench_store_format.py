"""Which file format the event store keeps its columns in (issue 15): read a few users out of many.

    python -m benchmarks.bench_store_format [--runs 5] [--users 500] [--events 2000]

One file holds ``--users`` users x ``--events`` events (sorted int64 ms, int32 screen and
instance codes), written once in each candidate format; then, alternating between formats, a
unit's read: 20 users picked at random, each user's three columns out of the file, and the whole
file's users once (a cold unit of everyone). Min/median/max over ``--runs``, and size on disk.

- ``segment``: the store's own (``worker/eventstore/segment.py``): a JSON header, raw columns,
  ``pread`` of each user's slices, a crc32 per user slice checked on every read;
- ``arrow-ipc``: Arrow IPC (Feather v2 uncompressed), one record batch per user, memory-mapped;
- ``parquet``: one row group per user (zstd), read with ``row_groups=[...]``;
- ``npz``: NumPy's ``.npz`` with one array per user and column (no compression).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from benchmarks.bench_api import spread
from worker.eventstore.segment import Segment, UserColumns, write_segment


def make_users(n_users: int, n_events: int, seed: int = 1) -> dict[str, UserColumns]:
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(n_users):
        t = np.sort(1_660_000_000_000 + rng.integers(0, 90 * 86_400_000, n_events)).astype(np.int64)
        out[f"user{k:05d}"] = UserColumns(
            t, rng.integers(0, 40, n_events).astype(np.int32), rng.integers(0, 12, n_events).astype(np.int32)
        )
    return out


def write_all(folder: Path, users: dict[str, UserColumns]) -> dict[str, Path]:
    paths = {}
    paths["segment"] = folder / "store.seg"
    write_segment(paths["segment"], sorted(users.items()), [f"s{i}" for i in range(40)], [f"i{i}" for i in range(12)])
    names = sorted(users)
    schema = pa.schema([("t", pa.int64()), ("screen", pa.int32()), ("instance", pa.int32())])
    paths["arrow-ipc"] = folder / "store.arrow"
    with ipc.new_file(str(paths["arrow-ipc"]), schema) as writer:
        for name in names:
            c = users[name]
            writer.write_batch(pa.record_batch([c.t, c.screen, c.instance], schema=schema))
    paths["parquet"] = folder / "store.parquet"
    with pq.ParquetWriter(str(paths["parquet"]), schema, compression="zstd") as writer:
        for name in names:
            c = users[name]
            writer.write_table(pa.table([c.t, c.screen, c.instance], schema=schema))
    paths["npz"] = folder / "store.npz"
    np.savez(
        paths["npz"],
        **{f"{name}.{col}": getattr(users[name], col) for name in names for col in ("t", "screen", "instance")},
    )
    return paths


def readers(paths: dict[str, Path], names: list[str]) -> dict[str, Callable[[list[str]], int]]:
    index = {name: i for i, name in enumerate(names)}  # the other formats' user index (a header would hold it)

    def segment(wanted: list[str]) -> int:
        with Segment(paths["segment"]) as seg:
            return sum(int(c.t.shape[0]) for u in wanted if (c := seg.read(u)) is not None)

    def arrow(wanted: list[str]) -> int:
        with pa.memory_map(str(paths["arrow-ipc"])) as source:
            reader = ipc.open_file(source)
            # np.asarray: the columns as the kernels take them (zero-copy for these types)
            return sum(np.asarray(reader.get_batch(index[u]).column(0)).shape[0] for u in wanted)

    def parquet(wanted: list[str]) -> int:
        f = pq.ParquetFile(paths["parquet"])
        table = f.read_row_groups([index[u] for u in wanted])
        return int(np.asarray(table.column("t")).shape[0])

    def npz(wanted: list[str]) -> int:
        with np.load(paths["npz"]) as z:
            return sum(
                z[f"{u}.t"].shape[0] + 0 * z[f"{u}.screen"].shape[0] + 0 * z[f"{u}.instance"].shape[0] for u in wanted
            )

    return {"segment": segment, "arrow-ipc": arrow, "parquet": parquet, "npz": npz}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--events", type=int, default=2000)
    args = ap.parse_args(argv)
    users = make_users(args.users, args.events)
    names = sorted(users)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-store-format-") as tmp:
        paths = write_all(Path(tmp), users)
        fns = readers(paths, names)
        few: dict[str, list[float]] = {k: [] for k in fns}
        everyone: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.runs):
            wanted = rng.sample(names, 20)
            for fmt, fn in fns.items():  # alternating: each run measures every format
                started = time.perf_counter()
                assert fn(wanted) == 20 * args.events
                few[fmt].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                assert fn(names) == len(names) * args.events
                everyone[fmt].append((time.perf_counter() - started) * 1000)
        total = args.users * args.events
        print(
            f"{args.users} users x {args.events} events ({total:,} events, {16 * total / 2**20:.1f} MiB of columns); "
            f"ms over {args.runs} runs"
        )
        print(f"{'format':<10} {'20 users (ms)':<40} {'every user (ms)':<40} size on disk")
        for fmt in fns:
            size = paths[fmt].stat().st_size
            print(
                f"{fmt:<10} {spread(few[fmt], '{:.2f}'):<40} {spread(everyone[fmt], '{:.1f}'):<40} "
                f"{size / 2**20:.1f} MiB"
            )
        base = statistics.median(few["segment"])
        print(
            "20-user read, median against segment: "
            + ", ".join(f"{fmt} {statistics.median(v) / base:.1f}x" for fmt, v in few.items())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
