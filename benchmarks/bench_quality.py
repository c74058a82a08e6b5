"""Session quality and range stability against planted sessions.

``python -m benchmarks.bench_quality [--tune] [--weeks N] [--seeds N]``

Quality: for each workload family and method, adjusted Rand index (noise events
count as singleton sessions) and session-boundary F1 (a predicted start/end matches
a planted start/end of the same kind within 5 minutes, one-to-one) over the whole
timeline. ``seed`` is the tutorial's approach: one ``hdbscan.HDBSCAN(min_cluster_size=5)``
over the whole timeline.

Stability: the job's view of the inner week (read with ``read_margin_ms`` on both
sides, keep sessions overlapping the week) against the view of the 13 weeks around
it; the sessions lying inside the inner week must be identical.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
from sklearn.metrics import adjusted_rand_score

from benchmarks.workloads import EPOCH_MS, FAMILIES, WEEK_MS, generate
from worker.core import label_sessions, sessions_in_range
from worker.core.params import DEFAULTS

TOLERANCE_MS = 5 * 60_000


def _with_singletons(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    noise = out < 0
    out[noise] = out.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    return out


def ari(truth: np.ndarray, labels: np.ndarray) -> float:
    return float(adjusted_rand_score(truth, _with_singletons(labels)))


def _bounds(t: np.ndarray, labels: np.ndarray):
    keep = labels >= 0
    lab, tt = labels[keep], t[keep]
    if lab.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = int(lab.max()) + 1
    start = np.full(k, np.iinfo(np.int64).max)
    end = np.full(k, np.iinfo(np.int64).min)
    np.minimum.at(start, lab, tt)
    np.maximum.at(end, lab, tt)
    return np.sort(start), np.sort(end)


def _matched(a: np.ndarray, b: np.ndarray) -> int:
    """Greedy one-to-one matches of sorted a to sorted b within the tolerance."""
    i = j = hits = 0
    while i < a.shape[0] and j < b.shape[0]:
        if abs(int(a[i]) - int(b[j])) <= TOLERANCE_MS:
            hits += 1
            i += 1
            j += 1
        elif a[i] < b[j]:
            i += 1
        else:
            j += 1
    return hits


def boundary_f1(t: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> float:
    ts, te = _bounds(t, truth)
    ps, pe = _bounds(t, labels)
    hits = _matched(ts, ps) + _matched(te, pe)
    n_true, n_pred = 2 * ts.shape[0], 2 * ps.shape[0]
    if hits == 0:
        return 0.0
    precision, recall = hits / n_pred, hits / n_true
    return 2 * precision * recall / (precision + recall)


def seed_labels(t: np.ndarray) -> np.ndarray:
    import hdbscan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hdbscan.HDBSCAN(min_cluster_size=5).fit_predict(t.astype(np.float64).reshape(-1, 1))


def _view(tl, method, params, start_ms, end_ms):
    """What a job returns for [start_ms, end_ms] of the timeline (worker.core.sessions_in_range)."""
    return sessions_in_range(tl.t_ms, tl.screen, tl.instance, start_ms, end_ms, method, params).sessions


def _rows_inside(table, start_ms, end_ms):
    inside = (table.start_ms >= start_ms) & (table.end_ms <= end_ms)
    fields = ("start_ms", "end_ms", "events", "instance", "entry_screen", "exit_screen", "split_reason")
    return set(zip(*(getattr(table, f)[inside].tolist() for f in fields)))


def stability(tl, method, params, weeks):
    mid = weeks // 2
    start = EPOCH_MS + mid * WEEK_MS  # the timelines start at EPOCH_MS
    end = start + WEEK_MS - 1
    week = _view(tl, method, params, start, end)
    wide = _view(tl, method, params, start - 6 * WEEK_MS, end + 6 * WEEK_MS)
    a, b = _rows_inside(week, start, end), _rows_inside(wide, start, end)
    return a == b, len(a), int(week.truncated_start.sum() + week.truncated_end.sum())


METHODS = {
    "hdbscan (default)": ("hdbscan", None),
    "gap (default)": ("gap", None),
}


def quality_table(weeks: int, seeds: int, methods=METHODS, with_seed=True, stable=True):
    rows = []
    for family in FAMILIES:
        tls = [generate(family, weeks=weeks, seed=s) for s in range(seeds)]
        entries = list(methods.items()) + ([("seed: global HDBSCAN(5)", None)] if with_seed else [])
        for name, spec in entries:
            aris, f1s, secs, stab = [], [], [], []
            for tl in tls:
                t0 = time.perf_counter()
                labels = seed_labels(tl.t_ms) if spec is None else label_sessions(tl.t_ms, *spec)
                secs.append(time.perf_counter() - t0)
                aris.append(ari(tl.truth, labels))
                f1s.append(boundary_f1(tl.t_ms, tl.truth, labels))
                if spec is not None and stable:
                    stab.append(stability(tl, spec[0], spec[1], weeks))
            rows.append(
                (
                    family,
                    name,
                    int(np.mean([tl.t_ms.shape[0] for tl in tls])),
                    min(aris),
                    float(np.mean(aris)),
                    float(np.mean(f1s)),
                    float(np.median(secs)),
                    stab,
                )
            )
    return rows


def print_table(rows):
    print(
        f"{'family':<10} {'method':<26} {'events':>7} {'ARI min':>8} {'ARI mean':>8} "
        f"{'bnd F1':>7} {'sec med':>8}  stable(inner week == 13 weeks)"
    )
    for family, name, n, amin, amean, f1, sec, stab in rows:
        st = (
            "n/a"
            if not stab
            else (
                f"{'yes' if all(s[0] for s in stab) else 'NO'} ({sum(s[1] for s in stab)} sessions, "
                f"{sum(s[2] for s in stab)} edge-flagged)"
            )
        )
        print(f"{family:<10} {name:<26} {n:>7} {amin:>8.3f} {amean:>8.3f} {f1:>7.3f} {sec:>8.3f}  {st}")


def tune(weeks: int, seeds: int) -> None:
    grid = {}
    for g in (600, 900, 1200, 1800, 2700, 3600):
        grid[f"gap max_gap_s={g}"] = ("gap", {"max_gap_s": g})
    for mcs, eps, idle, single in itertools.product((3, 5, 10), (0, 300, 600, 1200), (1800, 2700, 3600), (False, True)):
        grid[f"hdbscan mcs={mcs} eps={eps} idle={idle} single={single}"] = (
            "hdbscan",
            {
                "min_cluster_size": mcs,
                "cluster_selection_epsilon_s": eps,
                "split_idle_s": idle,
                "allow_single_cluster": single,
            },
        )
    rows = quality_table(weeks, seeds, grid, with_seed=False, stable=False)
    summary = {}
    # per configuration, one (worst ARI, mean ARI, mean F1) per family
    for _family, name, _, amin, amean, f1, *_ in rows:
        summary.setdefault(name, []).append((amin, amean, f1))
    ranked = sorted(summary.items(), key=lambda kv: -min(worst for worst, _, _ in kv[1]))
    print(f"{'configuration':<52} {'worst ARI':>9} {'mean ARI':>9} {'mean F1':>8}")
    for name, vals in ranked[:25]:
        print(
            f"{name:<52} {min(worst for worst, _, _ in vals):>9.3f} {np.mean([mean for _, mean, _ in vals]):>9.3f} "
            f"{np.mean([f for _, _, f in vals]):>8.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="grid search over parameters")
    parser.add_argument("--weeks", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"defaults: hdbscan {DEFAULTS['hdbscan']}; gap {DEFAULTS['gap']}")
    if args.tune:
        tune(args.weeks, args.seeds)
        return
    print_table(quality_table(args.weeks, args.seeds))


if __name__ == "__main__":
    main()
