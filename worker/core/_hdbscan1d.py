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

Steps 1 to 3 are in :mod:`worker.core._linkage`, step 4 in :mod:`worker.core._tree`
(condense tree -> stability -> clusters, as scikit-learn's ``_tree.pyx``).

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
   labelling as hdbscan's ``_hdbscan_tree.pyx`` does them, vectorised over points and
   clusters of all blocks (level by level up the cluster tree).

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

from ._linkage import single_linkage
from ._tree import Selection, tree_to_labels

__all__ = ["hdbscan_labels_blocks", "number_by_first_point"]

# Timelines are clustered in runs of whole blocks of about this many points.
_CHUNK_POINTS = 1 << 16


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
    min_cluster_size : int
        As in ``hdbscan.HDBSCAN`` (``>= 2``).
    min_samples : int
        As in ``hdbscan.HDBSCAN``, already resolved (``>= 1``); capped at the block size - 1.
    cluster_selection_epsilon : float
        In the units of ``x``.
    allow_single_cluster : bool
        As in ``hdbscan.HDBSCAN``, for each block.

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
    cuts = np.unique(np.append(np.searchsorted(bounds, np.arange(0, x.shape[0], _CHUNK_POINTS)), bounds.shape[0] - 1))
    labels = np.empty(x.shape[0], dtype=np.int64)
    for c0, c1 in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        lo, hi = int(bounds[c0]), int(bounds[c1])
        part = _labels_of_blocks(x[lo:hi], bounds[c0 : c1 + 1] - lo, *args)
        labels[lo:hi] = np.where(part >= 0, part + lo, -1)
    return labels


def _labels_of_blocks(
    x: np.ndarray,
    bounds: np.ndarray,
    min_cluster_size: int,
    min_samples: int,
    cluster_selection_epsilon: float,
    allow_single_cluster: bool,
) -> np.ndarray:
    """:func:`hdbscan_labels_blocks` in one pass.

    Parameters
    ----------
    x, bounds, min_cluster_size, min_samples, cluster_selection_epsilon, allow_single_cluster
        As for :func:`hdbscan_labels_blocks`.

    Returns
    -------
    labels : ndarray of int64, shape (n,)
        ``-1`` for noise, else a cluster index ``< n``.
    """
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
    hierarchy = single_linkage(xs, lo, hi, kp)
    out = tree_to_labels(hierarchy, n, Selection(min_cluster_size, cluster_selection_epsilon, allow_single_cluster))
    if pts is None:
        return out
    labels[pts] = out
    return labels


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for every pair (int64)."""
    total = int(lengths.sum())
    step = np.ones(total, dtype=np.int64)
    heads = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    step[heads] = starts - np.concatenate(([0], (starts + lengths - 1)[:-1]))
    return np.cumsum(step)


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
