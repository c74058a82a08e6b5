"""All blocks of a timeline clustered in one pass give the labels of one block at a time.

The reference below is the former per-block kernel, kept as a plain sequential
specification: Kruskal with union-find over the banded candidate edges in the tie
order (weight, raw distance, left end, right end), then hdbscan's condensed tree,
excess-of-mass selection (float32 subtree sums), epsilon search (leaves by decreasing
id) and labelling, one cluster at a time. The vectorised kernel must give the same
partition on every block, whatever the block sizes, duplicates and parameters.
"""

import numpy as np
import pytest

from benchmarks.workloads import FAMILIES, generate
from tests import core_kernels as kern
from worker.core import _hdbscan1d as k1d
from worker.core import label_sessions, method_params
from worker.core.blocks import block_bounds
from worker.core.params import idle_threshold_ms


def _reference_merges(x, k):
    """Kruskal on the pairs at most k apart: merges (left, right, size, distance, edge)."""
    n = x.shape[0]
    core = np.sort(np.abs(x[:, None] - x[None, :]), axis=1)[:, k]
    pairs = [(i, i + d) for d in range(1, k + 1) for i in range(n - d)]
    u = np.array([p[0] for p in pairs])
    v = np.array([p[1] for p in pairs])
    raw = x[v] - x[u]
    w = np.maximum(np.maximum(core[u], core[v]), raw)
    uf, node, size = list(range(n)), list(range(n)), [1] * n
    merges = []

    def find(a):
        while uf[a] != a:
            uf[a] = uf[uf[a]]
            a = uf[a]
        return a

    for e in np.lexsort((v, u, raw, w)).tolist():
        ra, rb = find(int(u[e])), find(int(v[e]))
        if ra != rb:
            merges.append((node[ra], node[rb], size[node[ra]] + size[node[rb]], float(w[e]), (int(u[e]), int(v[e]))))
            size.append(merges[-1][2])
            uf[rb] = ra
            node[ra] = n + len(merges) - 1
    return merges


def _reference_labels(x, mcs, ms, eps, single):
    """Labels of one block, as the former per-block kernel computed them."""
    n = x.shape[0]
    if n < 2 or n < mcs:
        return np.full(n, -1)
    merges = _reference_merges(x, max(1, min(n - 1, ms)))
    root = 2 * n - 2
    parent, children, size = {}, {}, [1] * n + [m[2] for m in merges]
    lam = [1.0 / m[3] if m[3] > 0 else np.inf for m in merges]
    for i, (a, b, _, _, _) in enumerate(merges):
        parent[a] = parent[b] = n + i
        children[n + i] = (a, b)
    # Condensed tree: clusters are the root and both children of a split of two big nodes.
    cluster_of, birth, c_parent = {}, {}, {}
    for node in range(root, n - 1, -1):
        if node == root:
            cluster_of[node] = node
            birth[node] = 0.0
        elif node not in cluster_of:  # below min_cluster_size
            continue
        a, b = children[node]
        split = size[a] >= mcs and size[b] >= mcs
        for ch in (a, b):
            if ch >= n and size[ch] >= mcs:
                cluster_of[ch] = ch if split else cluster_of[node]
                if split:
                    birth[ch] = lam[node - n]
                    c_parent[ch] = cluster_of[node]
    point_c, point_lam = [], []
    for p in range(n):
        node = parent[p]
        while size[node] < mcs:
            node = parent[node]
        point_c.append(cluster_of[node])
        point_lam.append(lam[node - n])
    clusters = sorted(birth)  # merge order: children before parents
    stab = dict.fromkeys(clusters, 0.0)
    for c, lv in zip(point_c, point_lam):
        stab[c] += lv - birth[c]
    for c in clusters:
        if c != root:
            stab[c_parent[c]] += (birth[c] - birth[c_parent[c]]) * size[c]
    # A split's children, left one first (the side of the edge's left end): hdbscan
    # sums their stabilities in that order, in float32.
    kids = {
        c: sorted((d for d in clusters if c_parent.get(d) == c), key=lambda d: children[parent[d]][0] != d)
        for c in clusters
    }

    def subtree(c):
        out, todo = [], [c]
        while todo:
            out.append(todo.pop())
            todo.extend(kids[out[-1]])
        return out

    order = [c for c in clusters if c != root] + ([root] if single else [])
    is_cluster = dict.fromkeys(order, True)
    for c in order:
        sub = np.float32(0.0)
        for d in kids[c]:
            sub = np.float32(float(sub) + stab[d])
        if float(sub) > stab[c]:
            is_cluster[c] = False
            stab[c] = float(sub)
        else:
            for d in subtree(c)[1:]:
                is_cluster[d] = False
    if eps != 0.0 and len(clusters) > 1:
        eom = [c for c in order if is_cluster[c]]
        selected = set()
        if eom == [root]:
            selected = {root}
        else:
            processed = set()
            for leaf in sorted(eom, reverse=True):
                if (1.0 / birth[leaf] if birth[leaf] > 0 else np.inf) >= eps:
                    selected.add(leaf)
                elif leaf not in processed:
                    pick = leaf
                    while True:
                        up = c_parent[pick]
                        if up == root:
                            pick = root if single else pick
                            break
                        if (1.0 / birth[up] if birth[up] > 0 else np.inf) > eps:
                            pick = up
                            break
                        pick = up
                    selected.add(pick)
                    processed.update(subtree(pick)[1:])
        is_cluster = {c: c in selected for c in is_cluster}
    chosen = {c for c, flag in is_cluster.items() if flag}
    labels = np.full(n, -1)
    for p in range(n):
        c = point_c[p]
        while c not in chosen and c != root:
            c = c_parent[c]
        if c != root:
            labels[p] = c
        elif c in chosen and len(chosen) == 1 and single:
            if eps != 0.0:
                keep = point_lam[p] >= 1.0 / eps
            else:
                tops = [birth[d] for d in kids[root]]
                tops += [lv for q, lv in zip(point_c, point_lam) if q == root]
                keep = point_lam[p] >= max(tops)
            labels[p] = c if keep else -1
    return labels


def _partition(labels):
    """Labels renumbered by first point (the partition, numbering ignored)."""
    return k1d.number_by_first_point(np.asarray(labels, dtype=np.int64))


def _reference_blocks(x, bounds, mcs, ms, eps, single):
    out = np.full(x.shape[0], -1)
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        lab = _reference_labels(x[lo:hi], mcs, ms, eps, single)
        out[lo:hi] = np.where(lab >= 0, lab + 2 * lo, -1)  # distinct across blocks
    return _partition(out)


def _random_blocks(rng):
    """A few blocks of small integer coordinates: many duplicates and equal distances."""
    sizes = rng.integers(1, 60, int(rng.integers(1, 6)))
    parts, offset = [], 0.0
    for s in sizes.tolist():
        part = np.sort(rng.integers(0, int(rng.choice([5, 30, 1000, 10**6])), s)).astype(float)
        parts.append(part + offset)
        offset = parts[-1][-1] + 10**7
    return np.concatenate(parts), np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)


@pytest.mark.parametrize("seed", range(3))
def test_spanning_tree_and_merge_order_follow_the_tie_rule(seed):
    """Same tree edges, taken in the same order, as Kruskal in (w, raw, left, right) order."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(80):
        x = np.sort(rng.integers(0, int(rng.choice([3, 10, 50])), int(rng.integers(2, 70)))).astype(float)
        k = int(rng.integers(1, min(9, x.shape[0])))
        core = kern.core_distances(x, k)
        u, v, _ = kern.candidate_edges(x, core, k)
        mst = kern.spanning_tree_ranks(x.shape[0], u, v)
        assert list(zip(u[mst].tolist(), v[mst].tolist())) == [m[4] for m in _reference_merges(x, k)]


def test_reference_matches_the_kernel_on_a_known_block():
    # Two dense groups 100 apart: two sessions with epsilon below the gap, one above it.
    x = np.concatenate((np.arange(10.0), 100.0 + np.arange(10.0)))
    bounds = np.array([0, 20])
    two = _reference_blocks(x, bounds, 5, 5, 10.0, True)
    assert two.tolist() == [0] * 10 + [1] * 10
    one = _reference_blocks(x, bounds, 5, 5, 200.0, True)
    assert one.tolist() == [0] * 20
    assert np.array_equal(_partition(k1d.hdbscan_labels_blocks(x, bounds, 5, 5, 10.0, True)), two)
    assert np.array_equal(_partition(k1d.hdbscan_labels_blocks(x, bounds, 5, 5, 200.0, True)), one)


@pytest.mark.parametrize("seed", range(4))
def test_batched_blocks_equal_reference_on_random_ties(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        x, bounds = _random_blocks(rng)
        mcs, ms = int(rng.integers(2, 9)), int(rng.integers(1, 9))
        single = bool(rng.integers(0, 2))
        spread = max(float(np.median(np.diff(x))) if x.shape[0] > 1 else 1.0, 1.0)
        eps = float(rng.choice([0.0, 0.5, 1.0, 3.0, 10.0, 100.0])) * spread
        got = _partition(k1d.hdbscan_labels_blocks(x, bounds, mcs, ms, eps, single))
        assert np.array_equal(got, _reference_blocks(x, bounds, mcs, ms, eps, single)), (
            x.tolist(),
            bounds.tolist(),
            mcs,
            ms,
            eps,
            single,
        )


@pytest.mark.parametrize(
    "params",
    [
        None,
        {"cluster_selection_epsilon_s": 0.0, "allow_single_cluster": False},
        {"min_cluster_size": 3, "min_samples": 8, "cluster_selection_epsilon_s": 300.0},
    ],
)
@pytest.mark.parametrize("coarse_ms", [1, 5000])
def test_label_sessions_equal_reference_on_workloads(params, coarse_ms):
    """Every family; coarse timestamps add many exact duplicates."""
    p = method_params("hdbscan", params)
    for family in FAMILIES:
        t = generate(family, weeks=1, seed=11).t_ms // coarse_ms * coarse_ms
        bounds = block_bounds(t, idle_threshold_ms("hdbscan", p))
        expected = _reference_blocks(
            t.astype(float),
            bounds,
            p["min_cluster_size"],
            p["min_samples"],
            p["cluster_selection_epsilon_s"] * 1000.0,
            p["allow_single_cluster"],
        )
        assert np.array_equal(label_sessions(t, "hdbscan", params), expected), family


def test_runs_of_blocks_give_the_labels_of_one_pass(monkeypatch):
    tl = generate("bursts", weeks=3, seed=3)
    whole = label_sessions(tl.t_ms, "hdbscan")
    monkeypatch.setattr(k1d, "_CHUNK_POINTS", 97)
    assert tl.t_ms.shape[0] > 2 * 97
    assert np.array_equal(label_sessions(tl.t_ms, "hdbscan"), whole)


def test_blocks_too_small_are_noise_and_never_merged():
    # Three blocks: 4 points (< min_cluster_size 5), 6 points, 1 point.
    t = np.array([0, 1, 2, 3, 10**7, 10**7 + 1, 10**7 + 2, 10**7 + 3, 10**7 + 4, 10**7 + 5, 10**9])
    bounds = np.array([0, 4, 10, 11])
    labels = k1d.hdbscan_labels_blocks(t.astype(float), bounds, 5, 5, 0.0, True)
    assert np.all(labels[:4] == -1) and labels[10] == -1
    assert np.unique(labels[4:10]).shape[0] == 1 and labels[4] >= 0
