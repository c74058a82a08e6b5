"""The analytics fields' cost in the core's session summary (issue 19), on 1,000,000 events of one
timeline (gap method): the whole ``summarize_sessions`` beside ``label_and_cut``, and the
distinct-screens kernel as shipped (a session x screen bitmap) beside sorting the pairs
(``np.unique``, its fallback when the bitmap would be large), alternating, min/median/max.

    python -m benchmarks session_fields
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from worker.core import label_and_cut, summarize_sessions
from worker.core.sessions import _active_ms, _distinct_per_session

N, REPEATS = 1_000_000, 9


def timeline(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    kind = rng.random(N)
    gaps = np.select(
        [kind < 0.02, kind < 0.2],
        [rng.integers(3_700_000, 7_200_000, N), rng.integers(60_000, 300_000, N)],
        rng.integers(200, 8_000, N),
    )
    return (
        np.cumsum(gaps).astype(np.int64),
        rng.integers(0, 40, N).astype(np.int32),
        rng.integers(0, 3, N).astype(np.int32),
    )


def main() -> None:
    t, screen, instance = timeline()
    labels, cut = label_and_cut(t, "gap", {})
    member = np.flatnonzero(labels >= 0)
    lab, codes = labels[member], screen[member]
    k = int(labels.max()) + 1
    width = int(codes.max()) + 1
    cases: dict[str, Callable[[], object]] = {
        "label_and_cut (gap)": lambda: label_and_cut(t, "gap", {}),
        "summarize_sessions, every field": lambda: summarize_sessions(
            t, labels, screen, instance, method="gap", cut=cut
        ),
        "distinct screens: bitmap (shipped)": lambda: _distinct_per_session(lab, codes, k),
        "distinct screens: sorted pairs": lambda: np.bincount(
            np.unique(lab.astype(np.int64) * width + codes) // width, minlength=k
        ),
        "active time": lambda: _active_ms(lab, t[member], k, 300_000),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(REPEATS):  # alternating: a noisy neighbour slows every case alike
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(f"{N:,} events, {k:,} sessions, {width} screens; {REPEATS} repeats (ms: min / median / max)")
    for name, xs in times.items():
        xs.sort()
        print(f"  {name:38s} {xs[0] * 1e3:8.1f} / {xs[len(xs) // 2] * 1e3:8.1f} / {xs[-1] * 1e3:8.1f}")
    ratio = np.median(times["distinct screens: sorted pairs"]) / np.median(times["distinct screens: bitmap (shipped)"])
    print(f"  sorted pairs / bitmap, medians: {ratio:.1f}x")


if __name__ == "__main__":
    main()
