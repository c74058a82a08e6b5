"""HDBSCAN* for one-dimensional data, written for sorted timestamps.

Same result as ``hdbscan.HDBSCAN(min_cluster_size, min_samples,
cluster_selection_epsilon, allow_single_cluster)`` with its other defaults
(``metric='euclidean'``, ``alpha=1``, ``cluster_selection_method='eom'``), up to
the numbering of clusters and the order in which merges at exactly equal
mutual-reachability distance are taken (see ``tie rule`` below).

Steps, following hdbscan:

1. Core distance of each point: distance to its ``k``-th nearest other point,
   ``k = min(min_samples, n - 1)``. In 1-D the ``k`` nearest points of ``i`` and ``i``
   itself form a window of ``k + 1`` consecutive sorted points, so the core distance
   is the minimum, over the ``k + 1`` windows that contain ``i``, of the distance from
   ``i`` to the farther end: ``O(n k)`` vectorised.
2. Minimum spanning tree of the mutual-reachability graph
   ``w(i, j) = max(core_i, core_j, |x_i - x_j|)``. Only pairs at most ``k`` apart in
   sorted order are needed: if ``j - i > k``, every point ``m`` strictly between
   has ``k + 1`` other points within ``x_j - x_i``, so ``core_m <= x_j - x_i`` and
   ``w(i, m), w(m, j) <= w(i, j)``; by induction on ``j - i`` the edge ``(i, j)`` is
   never lighter than a path of candidate edges (cycle property). The tree is found
   with a vectorised Boruvka on these ``n k`` edges, under a strict total order.
3. Single-linkage merges in that order (union-find, one Python step per merge).
4. Condensed tree, stabilities, excess-of-mass selection, epsilon search and
   labelling exactly as hdbscan's ``_hdbscan_tree.pyx`` does them, vectorised over
   points and looping only over clusters.

Tie rule. Edges are ordered by weight, then by raw distance ``|x_i - x_j|``, then by
left end, then by right end. hdbscan orders equal weights as its Boruvka search and
an unstable sort happen to leave them, so when several merges happen at one exact
distance the two may build different (equally valid) binary trees, and a point
whose two candidate sessions both join it at that distance may go to either.
"""

from __future__ import annotations

import numpy as np

__all__ = ["core_distances", "hdbscan_labels_1d"]

_NO_EDGE = np.iinfo(np.int64).max


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
    best = np.full(n, np.inf)
    for right in range(k + 1):  # window = k - right points on the left, right on the right
        left = k - right
        lo, hi = left, n - right  # points i with i - left >= 0 and i + right <= n - 1
        if lo >= hi:
            continue
        mid = x[lo:hi]
        reach = np.maximum(mid - x[lo - left : hi - left], x[lo + right : hi + right] - mid)
        np.minimum(best[lo:hi], reach, out=best[lo:hi])
    return best


def _candidate_edges(x: np.ndarray, core: np.ndarray, k: int):
    n = x.shape[0]
    us, vs = [], []
    for d in range(1, min(k, n - 1) + 1):
        u = np.arange(n - d, dtype=np.int64)
        us.append(u)
        vs.append(u + d)
    u = np.concatenate(us)
    v = np.concatenate(vs)
    raw = x[v] - x[u]
    w = np.maximum(np.maximum(core[u], core[v]), raw)
    order = np.lexsort((v, u, raw, w))
    return u[order], v[order], w[order]


def _boruvka(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indices (ranks) of the minimum spanning forest edges; edges are given by rank order."""
    comp = np.arange(n, dtype=np.int64)
    rank = np.arange(u.shape[0], dtype=np.int64)
    chosen = []
    while True:
        cu, cv = comp[u], comp[v]
        live = cu != cv
        if not np.any(live):
            break
        u, v, rank, cu, cv = u[live], v[live], rank[live], cu[live], cv[live]
        best = np.full(n, _NO_EDGE, dtype=np.int64)
        np.minimum.at(best, cu, rank)
        np.minimum.at(best, cv, rank)
        has = np.flatnonzero(best != _NO_EDGE)
        pick = best[has]
        # Map the picked ranks back to positions in the live arrays (ranks are sorted).
        pos = np.searchsorted(rank, pick)
        other = np.where(cu[pos] == has, cv[pos], cu[pos])
        chosen.append(np.unique(pick))
        # Hook every component to the other end of its lightest edge; a pair of
        # components that picked the same edge would form a 2-cycle: the smaller id roots it.
        hook = np.arange(n, dtype=np.int64)
        hook[has] = other
        mutual = hook[hook[has]] == has
        roots = has[mutual & (has < other)]
        hook[roots] = roots
        while True:
            nxt = hook[hook]
            if np.array_equal(nxt, hook):
                break
            hook = nxt
        comp = hook[comp]
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen))


def _single_linkage(n: int, a: list, b: list):
    """hdbscan's ``label``: binary merge tree from MST edges sorted by weight.

    Returns (left, right, size) of the merges; merge ``i`` creates node ``n + i``.
    """
    uf = list(range(n))
    node = list(range(n))
    size = [1] * (2 * n - 1)
    left = [0] * len(a)
    right = [0] * len(a)
    for i in range(len(a)):
        ra = a[i]
        while uf[ra] != ra:
            uf[ra] = uf[uf[ra]]
            ra = uf[ra]
        rb = b[i]
        while uf[rb] != rb:
            uf[rb] = uf[uf[rb]]
            rb = uf[rb]
        la, lb = node[ra], node[rb]
        left[i] = la
        right[i] = lb
        size[n + i] = size[la] + size[lb]
        uf[rb] = ra
        node[ra] = n + i
    return (
        np.asarray(left, dtype=np.int64),
        np.asarray(right, dtype=np.int64),
        np.asarray(size, dtype=np.int64),
    )


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
        Clusters numbered in the order hdbscan would give if its tree matched ours;
        callers should only rely on the partition.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    noise = np.full(n, -1, dtype=np.int64)
    if n < 2 or n < min_cluster_size:
        return noise
    k = max(1, min(n - 1, min_samples))
    core = core_distances(x, k)
    u, v, w = _candidate_edges(x, core, k)
    mst = _boruvka(n, u, v)
    a, b, dist = u[mst], v[mst], w[mst]
    left, right, size = _single_linkage(n, a.tolist(), b.tolist())
    return _labels_from_merges(n, left, right, size, dist, min_cluster_size,
                               cluster_selection_epsilon, allow_single_cluster)


def _labels_from_merges(n, left, right, size, dist, mcs, epsilon, allow_single):
    m = n - 1
    n_nodes = 2 * n - 1
    root = n_nodes - 1
    with np.errstate(divide="ignore", over="ignore"):
        lam_merge = np.where(dist > 0.0, 1.0 / dist, np.inf)
    parent = np.full(n_nodes, -1, dtype=np.int64)
    parent[left] = np.arange(n, n + m)
    parent[right] = np.arange(n, n + m)
    sibling = np.full(n_nodes, -1, dtype=np.int64)
    sibling[left] = right
    sibling[right] = left
    big = size >= mcs
    big_root = bool(big[root])
    # A big node starts a condensed cluster when it is the root or its sibling is big too
    # (hdbscan's "both children >= min_cluster_size"); otherwise it continues its parent's.
    is_new = big.copy()
    is_new[:root] &= big[np.maximum(sibling[:root], 0)] & (sibling[:root] >= 0)
    is_new[root] = big_root
    # Condensed cluster of each big node: nearest "new" node at or above it.
    up = np.where(is_new, np.arange(n_nodes), np.maximum(parent, 0))
    up[root] = root
    cluster_of = _resolve(up, is_new | ~big)
    # Each point leaves the tree at its lowest big ancestor (the merge that made its
    # component reach min_cluster_size), with lambda of that merge.
    up_small = np.where(big, np.arange(n_nodes), np.maximum(parent, 0))
    up_small[root] = root
    low_big = _resolve(up_small, big | (np.arange(n_nodes) == root))[:n]
    if not big_root:
        # hdbscan: the root keeps every point, which all fall out at its lambda.
        low_big[:] = root
    point_lam = lam_merge[low_big - n]
    point_cluster = cluster_of[low_big] if big_root else np.full(n, root)

    clusters = np.flatnonzero(is_new)  # node ids; ordered bottom-up by construction
    if not big_root:
        clusters = np.array([root], dtype=np.int64)
    n_cl = clusters.shape[0]
    cid = np.full(n_nodes, -1, dtype=np.int64)
    cid[clusters] = np.arange(n_cl)
    point_c = cid[point_cluster]
    # Cluster tree: birth lambda = lambda of the parent merge (root: 0), parent cluster.
    birth = np.zeros(n_cl)
    c_parent = np.full(n_cl, -1, dtype=np.int64)
    c_size = size[clusters]
    nonroot = clusters != root
    birth[nonroot] = lam_merge[parent[clusters[nonroot]] - n]
    c_parent[nonroot] = cid[cluster_of[parent[clusters[nonroot]]]]
    # Stability, as hdbscan: sum over rows (lambda - birth(parent)) * child_size.
    with np.errstate(invalid="ignore"):
        stab = np.bincount(point_c, weights=point_lam - birth[point_c], minlength=n_cl)
        ch = np.flatnonzero(nonroot)
        stab += np.bincount(c_parent[ch], weights=(birth[ch] - birth[c_parent[ch]]) * c_size[ch],
                            minlength=n_cl)

    return _select_and_label(n, n_cl, cid[root], c_parent, birth, stab, point_c, point_lam,
                             epsilon, allow_single, clusters)


def _select_and_label(n, n_cl, root_c, c_parent, birth, stab, point_c, point_lam, epsilon,
                      allow_single, clusters):
    children: dict[int, list[int]] = {}
    # hdbscan numbers clusters top-down (BFS), so a child always has a larger id than its
    # parent; our ids are bottom-up (merge order): walk them in increasing order instead.
    for c in range(n_cl):
        p = int(c_parent[c])
        if p >= 0:
            children.setdefault(p, []).append(c)
    for lst in children.values():
        lst.sort(key=lambda c: clusters[c])
    stability = stab.tolist()
    order = [c for c in range(n_cl) if c != root_c]
    if allow_single:
        order.append(root_c)
    is_cluster = {c: True for c in order}

    def subtree(c):
        out, todo = [], [c]
        while todo:
            node = todo.pop()
            out.append(node)
            todo.extend(children.get(node, ()))
        return out

    for c in order:
        sub = np.float32(0.0)
        for ch in children.get(c, ()):
            sub = np.float32(float(sub) + stability[ch])
        if float(sub) > stability[c]:
            is_cluster[c] = False
            stability[c] = float(sub)
        else:
            for d in subtree(c):
                if d != c:
                    is_cluster[d] = False

    has_tree = n_cl > 1
    if epsilon != 0.0 and has_tree:
        eom = [c for c in order if is_cluster[c]]
        if len(eom) == 1 and eom[0] == root_c:
            selected = set(eom) if allow_single else set()
        else:
            selected = set()
            processed = set()
            for leaf in sorted(eom, key=lambda c: clusters[c], reverse=True):
                eps = 1.0 / birth[leaf] if birth[leaf] > 0 else np.inf
                if eps < epsilon:
                    if leaf not in processed:
                        pick = _traverse_upwards(leaf, c_parent, birth, epsilon, allow_single, root_c)
                        selected.add(pick)
                        processed.update(d for d in subtree(pick) if d != pick)
                else:
                    selected.add(leaf)
        for c in is_cluster:
            is_cluster[c] = c in selected
    chosen = np.zeros(n_cl, dtype=bool)
    for c, flag in is_cluster.items():
        chosen[c] = flag

    # Nearest selected cluster at or above each point's cluster; the root catches the rest.
    up = np.where(chosen, np.arange(n_cl), np.maximum(c_parent, 0))
    up[root_c] = root_c
    done = chosen.copy()
    done[root_c] = True
    target = _resolve(up, done)[point_c]
    # Label numbering as hdbscan: selected clusters sorted by its (top-down) ids.
    sel = np.flatnonzero(chosen)
    number = np.full(n_cl, -1, dtype=np.int64)
    number[sel[np.argsort(-clusters[sel], kind="stable")]] = np.arange(sel.shape[0])
    labels = number[target]
    at_root = target == root_c
    if chosen[root_c] and sel.shape[0] == 1 and allow_single:
        if epsilon != 0.0:
            keep = point_lam >= 1.0 / epsilon
        else:
            child_lams = birth[c_parent == root_c]
            root_pts = point_lam[point_c == root_c]
            top = max(child_lams.max(initial=-np.inf), root_pts.max(initial=-np.inf))
            keep = point_lam >= top
        labels = np.where(at_root & ~keep, -1, labels)
    elif chosen[root_c]:
        labels = np.where(at_root, -1, labels)
    else:
        labels = np.where(at_root, -1, labels)
    return labels.astype(np.int64)


def _traverse_upwards(leaf, c_parent, birth, epsilon, allow_single, root_c):
    while True:
        parent = int(c_parent[leaf])
        if parent == root_c:
            return parent if allow_single else leaf
        parent_eps = 1.0 / birth[parent] if birth[parent] > 0 else np.inf
        if parent_eps > epsilon:
            return parent
        leaf = parent
