"""Steps 1 to 3 of the 1-D kernel: core distances, candidate edges, single linkage.

As the linkage half of scikit-learn's HDBSCAN (``sklearn/cluster/_hdbscan/_linkage.pyx``)
for sorted 1-D points, over every activity block at once; the proofs are in the module
docstring of :mod:`worker.core._hdbscan1d`. :func:`single_linkage` chains the steps and
returns the forest as a :data:`worker.core._tree.HIERARCHY_dtype` array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._tree import HIERARCHY_dtype

__all__ = ["single_linkage"]

# (weight << 31) | raw distance orders edges exactly while weights are integers < 2**31.
_PACK_LIMIT = float(2**31)
# Candidate edges are built for this many (point, offset) pairs at a time (memory bound).
_CHUNK_PAIRS = 1 << 22


def single_linkage(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, kp: np.ndarray) -> np.ndarray:
    """Single-linkage forest of the mutual-reachability graph of every block.

    Parameters
    ----------
    x : ndarray of float64, shape (n,)
        Coordinates, sorted within each block.
    lo, hi : ndarray of int64, shape (n,)
        Each point's block is ``x[lo[i]:hi[i]]`` (at least two points).
    kp : ndarray of int64, shape (n,)
        ``min(min_samples, block size - 1)`` for each point.

    Returns
    -------
    hierarchy : ndarray of HIERARCHY_dtype, shape (n - n_blocks,)
        Row ``j`` is node ``n + j``; merges at equal distance come in the tie order
        ``(distance, raw distance, left end, right end)``, ``left_node`` holding the edge's
        left end.
    """
    n = x.shape[0]
    core = _core_distances(x, lo, hi, kp)
    u, v, w, raw = _band_edges(x, core, hi, kp)
    order = _edge_order(u, v, w, raw)
    u, v, w = u[order], v[order], w[order]
    left, right, size = _merge_rounds(n, u, v)
    merge = np.flatnonzero(left >= 0)
    node = np.full(n + u.shape[0], -1, dtype=np.int64)  # point -> itself, merge rank -> row
    node[:n] = np.arange(n, dtype=np.int64)
    node[n + merge] = n + np.arange(merge.shape[0], dtype=np.int64)
    hierarchy = np.empty(merge.shape[0], dtype=HIERARCHY_dtype)
    hierarchy["left_node"] = node[left[merge]]
    hierarchy["right_node"] = node[right[merge]]
    hierarchy["value"] = w[merge]
    hierarchy["cluster_size"] = size[merge]
    return hierarchy


def _core_distances(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, kp: np.ndarray) -> np.ndarray:
    """Core distance of each point: distance to its ``kp[i]``-th nearest other point of its block.

    In 1-D the ``k`` nearest points of ``i`` and ``i`` itself form a window of ``k + 1``
    consecutive sorted points, so the core distance is the minimum, over the ``k + 1``
    windows that contain ``i``, of the distance from ``i`` to the farther end.

    Parameters
    ----------
    x : ndarray of float64, shape (n,)
        Coordinates, sorted within each block.
    lo, hi : ndarray of int64, shape (n,)
        Each point's block is ``x[lo[i]:hi[i]]``.
    kp : ndarray of int64, shape (n,)
        Neighbour rank of each point, ``1 <= kp[i] < hi[i] - lo[i]``.

    Returns
    -------
    core : ndarray of float64, shape (n,)
    """
    n = x.shape[0]
    core = np.full(n, np.inf)
    pos = np.arange(n, dtype=np.int64)
    before, after = pos - lo, hi - 1 - pos  # points of the block on each side
    for kk in np.unique(kp).tolist():
        if kp[0] == kp[-1] == kk and np.all(kp == kk):
            for right in range(kk + 1):  # window = kk - right points on the left, right on the right
                left = kk - right
                i = slice(left, n - right)
                reach = np.maximum(x[i] - x[: n - right - left], x[left + right :] - x[i])
                reach[(before[i] < left) | (after[i] < right)] = np.inf
                np.minimum(core[i], reach, out=core[i])
            continue
        idx = np.flatnonzero(kp == kk)
        for right in range(kk + 1):
            left = kk - right
            i = idx[(before[idx] >= left) & (after[idx] >= right)]
            reach = np.maximum(x[i] - x[i - left], x[i + right] - x[i])
            core[i] = np.minimum(core[i], reach)
    return core


def _band_edges(
    x: np.ndarray, core: np.ndarray, hi: np.ndarray, kp: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate edges of the mutual-reachability graph, cycle maxima already dropped.

    Pairs ``(u, v)``, ``0 < v - u <= kp[u]``, of one block (step 2 of the module
    docstring of :mod:`worker.core._hdbscan1d`), without the pairs ``v - u >= 2`` that
    come after every consecutive edge between them in the tie order.

    Parameters
    ----------
    x : ndarray of float64, shape (n,)
        Coordinates, sorted within each block.
    core : ndarray of float64, shape (n,)
        Core distances (:func:`_core_distances`).
    hi : ndarray of int64, shape (n,)
        End (exclusive) of each point's block.
    kp : ndarray of int64, shape (n,)
        Neighbour rank of each point.

    Returns
    -------
    u, v : ndarray of int64, shape (n_edges,)
        Left and right ends, in ``(u, v)`` order.
    w : ndarray of float64, shape (n_edges,)
        Mutual-reachability distance ``max(core[u], core[v], x[v] - x[u])``.
    raw : ndarray of float64, shape (n_edges,)
        ``x[v] - x[u]``.
    """
    n = x.shape[0]
    kmax = int(kp.max(initial=0))
    gap = np.diff(x)
    cw = np.maximum(np.maximum(core[:-1], core[1:]), gap)  # consecutive edge (m, m + 1)
    after = hi - 1 - np.arange(n, dtype=np.int64)  # points after each one in its block
    uniform = n == 0 or bool(np.all(kp == kmax))
    step = max(1, _CHUNK_PAIRS // max(kmax, 1))
    out = []
    for s in range(0, max(n - 1, 0), step):
        e = min(s + step, n - 1)  # left ends u in [s, e)
        rows = e - s
        keep = np.zeros((rows, kmax), dtype=bool)
        # Heaviest consecutive edge of [u, u + d) in the total order (w, raw, left end):
        # its weight, raw distance and whether it starts at u.
        bw = cw[s:e].copy()
        bg = gap[s:e].copy()
        at_u = np.ones(rows, dtype=bool)
        for d in range(1, kmax + 1):
            m = min(e, n - d) - s
            if m <= 0:
                break
            ok = after[s : s + m] >= d
            if not uniform:
                ok &= kp[s : s + m] >= d
            if d >= 2:
                r = x[s + d : s + d + m] - x[s : s + m]
                wd = np.maximum(np.maximum(core[s : s + m], core[s + d : s + d + m]), r)
                nw = cw[s + d - 1 : s + d - 1 + m]
                ng = gap[s + d - 1 : s + d - 1 + m]
                bw, bg, at_u = bw[:m], bg[:m], at_u[:m]
                # The later edge wins full ties (larger left end).
                later = (nw > bw) | ((nw == bw) & (ng >= bg))
                bw = np.where(later, nw, bw)
                bg = np.where(later, ng, bg)
                at_u &= ~later
                ok &= ~((bw < wd) | ((bw == wd) & ((bg < r) | ((bg == r) & at_u))))
            keep[:m, d - 1] = ok
        flat = np.flatnonzero(keep.ravel())
        eu = s + flat // kmax
        out.append((eu, eu + flat % kmax + 1))
    if not out:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0), np.zeros(0)
    u = np.concatenate([o[0] for o in out])
    v = np.concatenate([o[1] for o in out])
    raw = x[v] - x[u]
    return u, v, np.maximum(np.maximum(core[u], core[v]), raw), raw


def _edge_order(u: np.ndarray, v: np.ndarray, w: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Permutation sorting edges in the tie order ``(w, raw, u, v)``.

    Parameters
    ----------
    u, v, w, raw : ndarray, shape (n_edges,)
        As returned by :func:`_band_edges` (in ``(u, v)`` order, so a stable sort on
        ``(w, raw)`` breaks the remaining ties by ``(u, v)``).

    Returns
    -------
    order : ndarray of int64, shape (n_edges,)
    """
    if (
        w.size
        and w.max() < _PACK_LIMIT
        and np.array_equal(w, np.floor(w))
        and np.array_equal(raw, np.floor(raw))
        and raw.min() >= 0
    ):
        key = (w.astype(np.int64) << 31) | raw.astype(np.int64)
        return np.argsort(key, kind="stable")
    return np.lexsort((v, u, raw, w))


def _pointer_jump(ptr: np.ndarray) -> np.ndarray:
    """Root of every index of a forest given by parent pointers (roots point to themselves)."""
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            return ptr
        ptr = nxt


def _merge_rounds(n: int, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single-linkage merge tree of the graph whose edges ``(u[r], v[r])`` come by rank ``r``.

    A Boruvka round lets each component pick its lightest edge. The picks form hook
    trees whose edges grow lighter towards the tree's one mutual pick; in rank order,
    each pick of a tree joins a new component to those already joined, so the picks
    are Kruskal merges in that order up to the lightest edge leaving the tree: those
    picks are merged, the others wait for the next round.

    Parameters
    ----------
    n : int
        Number of points.
    u, v : ndarray of int64, shape (n_edges,)
        Edge ends, sorted by rank (the tie order).

    Returns
    -------
    left, right : ndarray of int32 or int64, shape (n_edges,)
        For the ranks that are minimum-spanning-forest edges, the two merged nodes (points
        ``0..n-1``, the merge of rank ``r`` is ``n + r``), the left one holding ``u[r]``;
        ``-1`` for the other ranks.
    size : ndarray, shape (n_edges,)
        Points in the merged node (0 for the other ranks).
    """
    m = u.shape[0]
    it: np.dtype[np.signedinteger[Any]] = np.dtype(np.int32 if n + m < 2**31 else np.int64)  # halves the memory traffic
    left = np.full(m, -1, dtype=it)
    right = np.full(m, -1, dtype=it)
    msize = np.zeros(m, dtype=it)
    # Components are renumbered 0..C-1 every round, dropping those left without edges.
    top = np.arange(n, dtype=it)  # component -> root node of its merge tree
    csize = np.ones(n, dtype=it)
    rank = np.arange(m, dtype=it)
    cu, cv = u.astype(it), v.astype(it)
    while True:
        live = cu != cv
        if not live.all():
            cu, cv, rank = cu[live], cv[live], rank[live]
        n_edges = rank.shape[0]
        if n_edges == 0:
            break
        n_comp = top.shape[0]
        pos = np.arange(n_edges, dtype=it)  # edges are in rank order
        pick = np.full(n_comp, n_edges, dtype=it)
        np.minimum.at(pick, cu, pos)
        np.minimum.at(pick, cv, pos)
        has = np.flatnonzero(pick < n_edges).astype(it)
        p = pick[has]
        pu = cu[p]
        other = np.where(pu == has, cv[p], pu)
        hook = np.arange(n_comp, dtype=it)
        hook[has] = other
        root = has[(hook[other] == has) & (has < other)]  # smaller end of the mutual pick
        hook[root] = root
        tree = _pointer_jump(hook)
        # Picks are taken up to the lightest edge leaving the hook tree: a pick below it
        # comes before every edge leaving the components picked before it, a pick above
        # it comes after the edge leaving the component that owns it (that component's
        # own pick is lighter still).
        tu, tv = tree[cu], tree[cv]
        cross = np.flatnonzero(tu != tv).astype(it)
        limit = np.full(n_comp, n_edges, dtype=it)
        np.minimum.at(limit, tu[cross], cross)
        np.minimum.at(limit, tv[cross], cross)
        t = tree[has]
        sel = p < limit[t]
        # Chain of each tree: its root component, then components by their pick's rank.
        order = np.argsort((t[sel].astype(np.int64) * (n_edges + 1) + p[sel]) * 2 + (has[sel] != t[sel]))
        sc = has[sel][order]
        sp = p[sel][order]
        st = t[sel][order]
        first = np.ones(sc.shape[0], dtype=bool)
        first[1:] = st[1:] != st[:-1]
        base = np.flatnonzero(first)
        grp = np.cumsum(first) - 1
        # Merge nodes: step 1 joins the two mutual components, step s >= 2 joins the
        # merge of step s - 1 with its own component.
        sizes = np.cumsum(csize[sc])
        sizes -= (sizes[base] - csize[sc[base]])[grp]
        idx = np.flatnonzero(~first)
        r = rank[sp[idx]]
        prev = np.where(first[idx - 1], top[sc[idx - 1]], n + rank[sp[idx - 1]])
        # Left is the side holding the edge's left end u, as hdbscan's linkage labels it.
        u_new = cu[sp[idx]] == sc[idx]
        left[r] = np.where(u_new, top[sc[idx]], prev)
        right[r] = np.where(u_new, prev, top[sc[idx]])
        msize[r] = sizes[idx]
        # New components: every chain joins its tree's root component.
        last = np.append(base[1:], sc.shape[0]) - 1
        top[st[last]] = n + rank[sp[last]]
        csize[st[last]] = sizes[last]
        target = np.arange(n_comp, dtype=it)
        target[sc] = st
        keep = np.zeros(n_comp, dtype=bool)
        keep[has] = True
        keep &= target == np.arange(n_comp)
        new_id = (np.cumsum(keep) - 1).astype(it)
        target = new_id[target]
        top, csize = top[keep], csize[keep]
        cu, cv = target[cu], target[cv]
    return left, right, msize
