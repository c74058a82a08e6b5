"""Speed of the sessionization core on one user's timeline.

``python -m benchmarks.bench_core_speed [--events N] [--ref-events N] [--repeats R]``

Measured side by side in one run, min/median/max over repeats, one core:
``gap`` and ``hdbscan`` (activity blocks + 1-D kernel) on N events of the ``exp``
family layout scaled to N events; ``hdbscan.HDBSCAN`` on the first ``ref-events``
of the same timestamps (whole range at once, as the seed did, and per activity
block as our method does). The reference is too slow to run on N events, so the
speed-up compares events per second: the reference is measured on ``ref-events``
and extrapolated linearly to N, which favours it (``hdbscan.HDBSCAN`` on the whole
range grows faster than linearly).

Targets: at least 1 M events/s for ours on N events, and at least 20x the
reference.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from benchmarks.workloads import generate
from worker.core import label_sessions
from worker.core.blocks import block_bounds
from worker.core.params import idle_threshold_ms, method_params


def _timeline(n_events: int) -> np.ndarray:
    weeks = 1
    while True:
        tl = generate("exp", weeks=weeks, seed=1)
        if tl.t_ms.shape[0] >= n_events:
            return tl.t_ms[:n_events]
        weeks *= 2


def _time(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return np.array(out)


def _hdbscan_global(t):
    import hdbscan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdbscan.HDBSCAN(min_cluster_size=5, core_dist_n_jobs=1).fit_predict(t.astype(float).reshape(-1, 1))


def _hdbscan_blocks(t):
    from devstack.reference import hdbscan_block_labels

    p = method_params("hdbscan", None)
    bounds = block_bounds(t, idle_threshold_ms("hdbscan", p))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        hdbscan_block_labels(
            t[lo:hi],
            p["min_cluster_size"],
            p["min_samples"],
            p["cluster_selection_epsilon_s"] * 1000.0,
            p["allow_single_cluster"],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--ref-events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t = _timeline(args.events)
    ref = t[: args.ref_events]
    print(
        f"timeline: {t.shape[0]} events over {(t[-1] - t[0]) / 86_400_000:.0f} days; "
        f"defaults {method_params('hdbscan', None)}"
    )
    rows = [
        (f"gap            n={t.shape[0]}", lambda: label_sessions(t, "gap"), t.shape[0], args.repeats),
        (f"hdbscan (ours) n={t.shape[0]}", lambda: label_sessions(t, "hdbscan"), t.shape[0], args.repeats),
        (f"hdbscan (ours) n={ref.shape[0]}", lambda: label_sessions(ref, "hdbscan"), ref.shape[0], args.repeats),
        (f"hdbscan.HDBSCAN per block n={ref.shape[0]}", lambda: _hdbscan_blocks(ref), ref.shape[0], 3),
        (f"hdbscan.HDBSCAN global n={ref.shape[0]}", lambda: _hdbscan_global(ref), ref.shape[0], 3),
    ]
    rates = {}
    print(f"{'what':<40} {'min s':>8} {'median s':>9} {'max s':>8} {'Mevents/s (median)':>19}")
    for name, fn, n, reps in rows:
        secs = _time(fn, reps)
        rate = n / np.median(secs) / 1e6
        rates[name] = rate
        print(f"{name:<40} {secs.min():>8.3f} {np.median(secs):>9.3f} {secs.max():>8.3f} {rate:>19.3f}")
    ours = rates[rows[1][0]]
    print(
        f"speed-up in events/s, ours (n={t.shape[0]}) vs hdbscan.HDBSCAN measured on n={ref.shape[0]} "
        f"and extrapolated linearly: global {ours / rates[rows[4][0]]:.1f}x, "
        f"per block {ours / rates[rows[3][0]]:.1f}x (targets: >= 1 Mevents/s, >= 20x)"
    )


if __name__ == "__main__":
    main()
