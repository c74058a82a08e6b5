"""HDBSCAN* for one-dimensional data, written for sorted timestamps.

Same result as ``hdbscan.HDBSCAN(min_cluster_size, min_samples,
cluster_selection_epsilon, allow_single_cluster)`` with its other defaults
(``metric='euclidean'``, ``alpha=1``, ``cluster_selection_method='eom'``), up to
the numbering of clusters and the order in which merges at exactly equal
mutual-reachability distance are taken (see ``tie rule`` below): our labels are
hdbscan's own tree code (``label``, ``condense_tree``, ``compute_stability``,
``get_clusters``, ``do_labelling``) applied to the minimum spanning tree that
Kruskal takes in the tie order, including its float32 sum of a split's two child
stabilities, left child first (on an exact tie the order decides the rounding, and
the rounding decides between the parent and its children).

All activity blocks of a timeline (disjoint index ranges, never merged) are
clustered together in one vectorised pass; nothing loops in Python per block or
per merge. Steps, following hdbscan:

1. Core distance of each point: distance to its ``k``-th nearest other point of its
   block, ``k = min(min_samples, n_block - 1)``. In 1-D the ``k`` nearest points of
   ``i`` and ``i`` itself form a window of ``k + 1`` consecutive sorted points, so the
   core distance is the minimum, over the ``k + 1`` windows that contain ``i``, of the
   distance from ``i`` to the farther end: ``O(n k)`` vectorised.
2. Candidate edges of the mutual-reachability graph
   ``w(i, j) = max(core_i, core_j, |x_i - x_j|)``. Only pairs at most ``k`` apart in
   sorted order are needed: if ``j - i > k``, every point ``m`` strictly between
   has ``k + 1`` other points within ``x_j - x_i``, so ``core_m <= x_j - x_i`` and
   ``w(i, m), w(m, j) <= w(i, j)``; by induction on ``j - i`` the edge ``(i, j)`` is
   never lighter than a path of candidate edges (cycle property). Of these, a pair
   ``(i, j)`` with ``j - i >= 2`` is dropped when every consecutive edge
   ``(m, m + 1)``, ``i <= m < j``, comes strictly before it in the total order below
   (it is then the unique heaviest edge of a cycle, never in the tree); about 90 % of
   the long pairs go.
3. Minimum spanning forest and single-linkage merge tree together, by Boruvka
   rounds (``_merge_rounds``): every component picks its lightest edge; the picks
   of one hook tree, sorted, merge one new component at a time into the tree's
   lightest pick, which is exactly Kruskal's order for the picks lighter than every
   edge leaving the tree; the others wait for the next round. About five rounds.
4. Condensed tree, stabilities, excess-of-mass selection, epsilon search and
   labelling exactly as hdbscan's ``_hdbscan_tree.pyx`` does them, vectorised over
   points and clusters of all blocks (level by level up the cluster tree).

Tie rule. Edges are ordered by weight, then by raw distance ``|x_i - x_j|``, then by
left end, then by right end; a merge's left side is the one holding the edge's left
end. hdbscan's algorithms sort their tree edges with an unstable sort, so equal
weights come in an order that depends on the row order and on the CPU's sort kernel:
when several merges happen at one exact distance the two may build different (equally
valid) binary trees, and a point whose two candidate sessions both join it at that
distance may go to either. With distinct tree weights the tree is unique and the
labels are equal; ``tests/test_core_differential.py`` checks both statements.
"""

from __future__ import annotations

import numpy as np

__all__ = ["core_distances", "hdbscan_labels_1d", "hdbscan_labels_blocks"]

# (weight << 31) | raw distance orders edges exactly while weights are integers < 2**31.
_PACK_LIMIT = float(2**31)
# Candidate edges are built for this many (point, offset) pairs at a time (memory bound).
_CHUNK_PAIRS = 1 << 22
# Timelines are clustered in runs of whole blocks of about this many points.
_CHUNK_POINTS = 1 << 16


def core_distances(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each sorted point to its ``k``-th nearest other point.

    Parameters
    ----------
    x : ndarray of float64, shape (n,)
        Sorted coordinates, ``n >= k + 1``.
    k : int
        Neighbour rank, ``k >= 1``.
    """
    n = x.shape[0]
    return _core_distances(np.asarray(x, dtype=np.float64), np.zeros(n, np.int64),
                           np.full(n, n, np.int64), np.full(n, k, np.int64))


def _core_distances(x, lo, hi, kp):
    """Core distance of each point within its block ``[lo[i], hi[i])`` for rank ``kp[i]``."""
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


def _band_edges(x, core, hi, kp):
    """Candidate edges ``(u, v, w, raw)`` in ``(u, v)`` order, cycle-maxima already dropped."""
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


def _edge_order(u, v, w, raw):
    """Permutation sorting edges by (w, raw, u, v); edges come in (u, v) order."""
    if (w.size and w.max() < _PACK_LIMIT and np.array_equal(w, np.floor(w))
            and np.array_equal(raw, np.floor(raw)) and raw.min() >= 0):
        key = (w.astype(np.int64) << 31) | raw.astype(np.int64)
        return np.argsort(key, kind="stable")
    return np.lexsort((v, u, raw, w))


def _candidate_edges(x: np.ndarray, core: np.ndarray, k: int):
    """Candidate edges of one block, sorted by the total order: ``(u, v, w)``."""
    n = x.shape[0]
    x = np.asarray(x, dtype=np.float64)
    u, v, w, raw = _band_edges(x, core, np.full(n, n, np.int64), np.full(n, k, np.int64))
    order = _edge_order(u, v, w, raw)
    return u[order], v[order], w[order]


def _boruvka(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indices (ranks) of the minimum spanning forest edges; edges are given by rank order."""
    return np.flatnonzero(_merge_rounds(n, u, v)[0] >= 0)


def _pointer_jump(ptr: np.ndarray) -> np.ndarray:
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            return ptr
        ptr = nxt


def _merge_rounds(n: int, u: np.ndarray, v: np.ndarray):
    """Single-linkage merge tree of the graph whose edges ``(u[r], v[r])`` come by rank ``r``.

    Returns ``(left, right, size)`` indexed by rank: the two merged nodes and the merged
    size for the ranks that are minimum-spanning-forest edges, ``-1`` elsewhere. Nodes
    are points ``0..n-1`` and merges ``n + rank``.

    A Boruvka round lets each component pick its lightest edge. The picks form hook
    trees whose edges grow lighter towards the tree's one mutual pick; in rank order,
    each pick of a tree joins a new component to those already joined, so the picks
    are Kruskal merges in that order up to the lightest edge leaving the tree: those
    picks are merged, the others wait for the next round.
    """
    m = u.shape[0]
    it = np.int32 if n + m < 2**31 else np.int64  # halves the memory traffic
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


def _resolve(ptr: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Follow ``ptr`` from every index until an index with ``done`` set (pointer doubling)."""
    ptr = ptr.copy()
    todo = np.flatnonzero(~done[ptr])
    while todo.size:
        ptr[todo] = ptr[ptr[todo]]
        todo = todo[~done[ptr[todo]]]
    return ptr


def hdbscan_labels_1d(
    x: np.ndarray,
    min_cluster_size: int,
    min_samples: int,
    cluster_selection_epsilon: float = 0.0,
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """HDBSCAN labels of sorted 1-D points (``-1`` noise, clusters ``0..k-1``).

    Parameters
    ----------
    x : ndarray of float64, shape (n,)
        Sorted coordinates (duplicates allowed).
    min_cluster_size, min_samples : int
        As in ``hdbscan.HDBSCAN`` (``min_samples`` already resolved, >= 1).
    cluster_selection_epsilon : float
        In the units of ``x``.
    allow_single_cluster : bool
        As in ``hdbscan.HDBSCAN``.

    Returns
    -------
    labels : ndarray of int64, shape (n,)
        Clusters numbered by first point; callers should only rely on the partition.
    """
    x = np.asarray(x, dtype=np.float64)
    bounds = np.array([0, x.shape[0]], dtype=np.int64)
    labels = hdbscan_labels_blocks(x, bounds, min_cluster_size, min_samples,
                                   cluster_selection_epsilon, allow_single_cluster)
    return number_by_first_point(labels)


def number_by_first_point(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters ``0..k-1`` in order of their first point (``-1`` kept)."""
    n = labels.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    member = np.flatnonzero(labels >= 0)
    if member.size:
        lab = labels[member]
        first = np.full(int(lab.max()) + 1, n, dtype=np.int64)
        np.minimum.at(first, lab, member)
        used = np.flatnonzero(first < n)
        rank = np.zeros(first.shape[0], dtype=np.int64)
        rank[used[np.argsort(first[used])]] = np.arange(used.shape[0], dtype=np.int64)
        out[member] = rank[lab]
    return out


def hdbscan_labels_blocks(
    x: np.ndarray,
    bounds: np.ndarray,
    min_cluster_size: int,
    min_samples: int,
    cluster_selection_epsilon: float = 0.0,
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """HDBSCAN labels of every block ``x[bounds[b]:bounds[b + 1]]``, clustered separately.

    Parameters
    ----------
    x : ndarray of float64, shape (n,)
        Coordinates, sorted within each block (duplicates allowed).
    bounds : ndarray of int64, shape (n_blocks + 1,)
        Block start offsets and ``n`` (as :func:`worker.core.blocks.block_bounds`).
    min_cluster_size, min_samples, cluster_selection_epsilon, allow_single_cluster
        As for :func:`hdbscan_labels_1d`, applied to each block.

    Returns
    -------
    labels : ndarray of int64, shape (n,)
        ``-1`` for noise; clusters have distinct non-negative ids across blocks, in no
        particular order. Blocks with fewer than ``max(2, min_cluster_size)`` points are
        all noise.
    """
    x = np.asarray(x, dtype=np.float64)
    bounds = np.asarray(bounds, dtype=np.int64)
    args = (min_cluster_size, min_samples, cluster_selection_epsilon, allow_single_cluster)
    if x.shape[0] <= 2 * _CHUNK_POINTS:
        return _labels_of_blocks(x, bounds, *args)
    # Runs of whole blocks of about _CHUNK_POINTS points: the arrays stay in cache,
    # which is faster than one pass over everything (and ids stay distinct).
    cuts = np.unique(np.append(np.searchsorted(bounds, np.arange(0, x.shape[0], _CHUNK_POINTS)),
                               bounds.shape[0] - 1))
    labels = np.empty(x.shape[0], dtype=np.int64)
    for c0, c1 in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        lo, hi = int(bounds[c0]), int(bounds[c1])
        part = _labels_of_blocks(x[lo:hi], bounds[c0 : c1 + 1] - lo, *args)
        labels[lo:hi] = np.where(part >= 0, part + lo, -1)
    return labels


def _labels_of_blocks(x, bounds, min_cluster_size, min_samples, cluster_selection_epsilon,
                      allow_single_cluster):
    """:func:`hdbscan_labels_blocks` in one pass; ids are cluster indices ``< len(x)``."""
    n_all = x.shape[0]
    labels = np.full(n_all, -1, dtype=np.int64)
    sizes = np.diff(bounds)
    active = sizes >= max(2, min_cluster_size)
    if not active.any():
        return labels
    if active.all():
        pts = None
        xs, sz = x, sizes
    else:
        sz = sizes[active]
        pts = _ranges(bounds[:-1][active], sz)
        xs = x[pts]
    n = xs.shape[0]
    starts = np.concatenate(([0], np.cumsum(sz)[:-1]))
    lo = np.repeat(starts, sz)
    hi = lo + np.repeat(sz, sz)
    kp = np.repeat(np.maximum(1, np.minimum(sz - 1, min_samples)), sz)
    core = _core_distances(xs, lo, hi, kp)
    u, v, w, raw = _band_edges(xs, core, hi, kp)
    order = _edge_order(u, v, w, raw)
    u, v, w = u[order], v[order], w[order]
    left, right, msize = _merge_rounds(n, u, v)
    merge = np.flatnonzero(left >= 0)
    node = np.arange(n, dtype=np.int64)
    remap = np.full(n + u.shape[0], -1, dtype=np.int64)
    remap[:n] = node
    remap[n + merge] = n + np.arange(merge.shape[0], dtype=np.int64)
    out = _labels_from_merges(n, remap[left[merge]], remap[right[merge]],
                              np.concatenate((np.ones(n, np.int64), msize[merge])), w[merge],
                              min_cluster_size, cluster_selection_epsilon, allow_single_cluster)
    if pts is None:
        return out
    labels[pts] = out
    return labels


def _ranges(starts, lengths):
    """Concatenation of ``arange(s, s + l)`` for every pair."""
    total = int(lengths.sum())
    step = np.ones(total, dtype=np.int64)
    heads = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    step[heads] = starts - np.concatenate(([0], (starts + lengths - 1)[:-1]))
    return np.cumsum(step)


def _labels_from_merges(n, left, right, size, dist, mcs, epsilon, allow_single):
    """Labels of a merge forest (one tree per block, every tree at least ``mcs`` points).

    ``left``/``right`` hold node ids (points ``< n``, merge ``j`` is ``n + j``); merges
    come in order, children before parents. Everything below works on merge indices.
    """
    m = left.shape[0]
    it = np.int32 if n + m < 2**31 else np.int64
    mid = np.arange(m, dtype=it)
    with np.errstate(divide="ignore", over="ignore"):
        lam_merge = np.where(dist > 0.0, 1.0 / dist, np.inf)
    msize = size[n:]
    big = msize >= mcs  # points are never big (mcs >= 2)
    par_pt = np.empty(n, dtype=it)  # merge that absorbs each point
    par = np.full(m, -1, dtype=it)  # parent merge of each merge (-1: block root)
    for side in (left, right):
        pt = side < n
        par_pt[side[pt]] = mid[pt]
        par[side[~pt] - n] = mid[~pt]
    is_top = par < 0
    # A big node starts a condensed cluster when it is a root or its sibling is big too
    # (hdbscan's "both children >= min_cluster_size"); otherwise it continues its parent's.
    split = (size[left] >= mcs) & (size[right] >= mcs)
    is_new = is_top | split[np.maximum(par, 0)]
    cluster_of = _resolve(np.where(is_new, mid, par), is_new | ~big)
    # Each point leaves the tree at its lowest big ancestor (the merge that made its
    # component reach min_cluster_size, fewer than mcs steps up), with lambda of that merge.
    low_big = par_pt
    todo = np.flatnonzero(~big[low_big])
    while todo.size:
        low_big[todo] = par[low_big[todo]]
        todo = todo[~big[low_big[todo]]]
    point_lam = lam_merge[low_big]

    clusters = np.flatnonzero(is_new).astype(it)  # children before parents
    n_cl = clusters.shape[0]
    cid = np.full(m, -1, dtype=it)
    cid[clusters] = np.arange(n_cl, dtype=it)
    point_c = cid[cluster_of[low_big]]
    # Cluster tree: birth lambda = lambda of the parent merge (root: 0), parent cluster.
    c_root = is_top[clusters]
    nonroot = ~c_root
    birth = np.zeros(n_cl)
    c_parent = np.arange(n_cl, dtype=it)  # roots point to themselves
    c_size = msize[clusters]
    birth[nonroot] = lam_merge[par[clusters[nonroot]]]
    c_parent[nonroot] = cid[cluster_of[par[clusters[nonroot]]]]
    c_left = np.zeros(n_cl, dtype=bool)  # left child of its parent's split
    c_left[nonroot] = left[par[clusters[nonroot]]] == n + clusters[nonroot]
    # Stability, as hdbscan: sum over rows (lambda - birth(parent)) * child_size.
    with np.errstate(invalid="ignore"):
        stab = np.bincount(point_c, weights=point_lam - birth[point_c], minlength=n_cl)
        ch = np.flatnonzero(nonroot)
        stab += np.bincount(c_parent[ch], weights=(birth[ch] - birth[c_parent[ch]]) * c_size[ch],
                            minlength=n_cl)
    block_root = _resolve(c_parent, c_root)
    chosen = _select(c_parent, c_left, c_root, block_root, birth, stab, epsilon, allow_single)

    # Nearest selected cluster at or above each point's cluster; the root catches the rest.
    target = _resolve(np.where(chosen, np.arange(n_cl), c_parent), chosen | c_root)[point_c]
    at_root = c_root[target] & ~chosen[target]
    n_sel = np.bincount(block_root[chosen], minlength=n_cl)
    single_root = c_root & chosen & (n_sel == 1) & allow_single
    at_root |= c_root[target] & chosen[target] & ~single_root[target]
    if single_root.any():
        # hdbscan keeps, in a lone root cluster, only the points that leave it late enough.
        if epsilon != 0.0:
            keep = point_lam >= 1.0 / epsilon
        else:
            top = np.full(n_cl, -np.inf)
            np.maximum.at(top, c_parent[ch], birth[ch])
            at = np.flatnonzero(c_root[point_c])
            np.maximum.at(top, point_c[at], point_lam[at])
            keep = point_lam >= top[block_root[point_c]]
        at_root |= single_root[target] & ~keep
    return np.where(at_root, -1, target)


def _select(c_parent, c_left, c_root, block_root, birth, stab, epsilon, allow_single):
    """hdbscan's excess-of-mass selection (with its epsilon search) on a cluster forest."""
    n_cl = c_parent.shape[0]
    processed = ~c_root | allow_single
    # Every split is binary: a cluster has no child cluster or two.
    ch = np.flatnonzero(~c_root)
    # By parent, left child first: hdbscan sums a split's stabilities in that order,
    # in float32, so the order decides exact ties.
    ch = ch[np.lexsort((~c_left[ch], c_parent[ch]))]
    kid1 = np.full(n_cl, -1, dtype=np.int64)
    kid2 = np.full(n_cl, -1, dtype=np.int64)
    kid1[c_parent[ch[0::2]]] = ch[0::2]
    kid2[c_parent[ch[1::2]]] = ch[1::2]
    leaf = kid1 < 0
    # Bottom-up, level by level: subtree stability summed in float32 as hdbscan does.
    stability = stab.copy()
    keep = np.zeros(n_cl, dtype=bool)
    keep[leaf] = ~(0.0 > stability[leaf])
    stability[leaf] = np.where(keep[leaf], stability[leaf], 0.0)
    done = leaf.copy()
    todo = np.flatnonzero(~leaf)
    while todo.size:
        ready = todo[done[kid1[todo]] & done[kid2[todo]]]
        todo = todo[~(done[kid1[todo]] & done[kid2[todo]])]
        s1 = stability[kid1[ready]].astype(np.float32)
        sub = (s1.astype(np.float64) + stability[kid2[ready]]).astype(np.float32).astype(np.float64)
        gt = sub > stability[ready]
        stability[ready] = np.where(gt, sub, stability[ready])
        keep[ready] = ~gt
        done[ready] = True
    keep &= processed
    # A kept cluster deselects its whole subtree: selected = kept with no kept ancestor.
    anc = _resolve(c_parent, keep | c_root)
    eom = keep & ~(keep[anc] & ~c_root)
    has_tree = np.bincount(block_root, minlength=n_cl)[block_root] > 1
    if epsilon == 0.0 or not has_tree.any():
        return eom
    return _epsilon_select(eom, has_tree, c_parent, c_root, block_root, birth, epsilon, allow_single)


def _epsilon_select(eom, has_tree, c_parent, c_root, block_root, birth, epsilon, allow_single):
    n_cl = c_parent.shape[0]
    with np.errstate(divide="ignore"):
        eps_birth = np.where(birth > 0, 1.0 / np.where(birth > 0, birth, 1.0), np.inf)
    # Blocks where EOM kept only the root keep it (only possible with allow_single).
    lone_root = has_tree & eom & c_root
    chosen = eom & ~has_tree
    chosen |= lone_root
    other = has_tree & eom & ~c_root & ~lone_root[block_root]
    chosen |= other & ~(eps_birth < epsilon)
    cand = np.flatnonzero(other & (eps_birth < epsilon))
    if cand.size == 0:
        return chosen
    # Traverse upwards: first ancestor born above epsilon; a child of the root stops
    # at the root (allow_single) or at itself.
    par = c_parent
    par_root = c_root[par] & ~c_root
    stop = par_root | (eps_birth[par] > epsilon) | c_root
    ptr = np.where(stop, np.arange(n_cl), par)
    end = _resolve(ptr, stop)
    res = np.where(par_root[end], par[end] if allow_single else end, par[end])
    # hdbscan walks the leaves in turn and skips a leaf inside an earlier pick's subtree,
    # which could only matter if one pick lay inside another. It cannot: epsilons only
    # shrink downwards and siblings share theirs, so below a pick born above epsilon
    # (or below the root child reached from a leaf) every cluster is at most epsilon.
    chosen[res[cand]] = True
    return chosen
