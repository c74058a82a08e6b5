"""Step 4 of the 1-D kernel: from a single-linkage forest to HDBSCAN labels.

As scikit-learn's ``sklearn/cluster/_hdbscan/_tree.pyx`` (itself hdbscan's
``_hdbscan_tree.pyx``): :func:`tree_to_labels` is :func:`_condense_tree` ->
:func:`_compute_stability` -> :func:`_get_clusters`, over the declared dtypes below.
Two differences: the input is a forest (one tree per activity block, clustered
separately), and every step is vectorised over nodes and clusters (pointer doubling,
and excess of mass level by level up the cluster tree) instead of looping over them.

Lambdas are ``1 / distance`` (``inf`` at distance 0), as in hdbscan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CONDENSED_dtype", "HIERARCHY_dtype", "Selection", "tree_to_labels"]

# A single-linkage merge: row j is node n_samples + j (points are 0..n_samples-1).
HIERARCHY_dtype = np.dtype(
    [
        ("left_node", np.intp),
        ("right_node", np.intp),
        ("value", np.float64),  # distance of the merge
        ("cluster_size", np.intp),
    ]
)

# An edge of the condensed tree: a point (child < n_samples) or a cluster leaving its parent
# cluster at lambda ``value``. Clusters are n_samples + 0..n_clusters-1.
CONDENSED_dtype = np.dtype(
    [
        ("parent", np.intp),
        ("child", np.intp),
        ("value", np.float64),  # lambda
        ("cluster_size", np.intp),
    ]
)


@dataclass(frozen=True)
class Selection:
    """How clusters are selected from the condensed tree, as ``hdbscan.HDBSCAN``'s parameters.

    Attributes
    ----------
    min_cluster_size : int
        ``>= 2``.
    epsilon : float
        ``cluster_selection_epsilon``, in the units of the distances.
    allow_single_cluster : bool
        For each tree.
    """

    min_cluster_size: int
    epsilon: float = 0.0
    allow_single_cluster: bool = False


@dataclass(frozen=True)
class _ClusterTree:
    """The clusters of a condensed forest, indexed by cluster id minus ``n_samples``.

    Attributes
    ----------
    parent : ndarray of int, shape (n_clusters,)
        Parent cluster (roots: themselves).
    root : ndarray of bool, shape (n_clusters,)
        The cluster is a tree's root.
    tree_root : ndarray of int, shape (n_clusters,)
        The root of each cluster's tree.
    birth : ndarray of float64, shape (n_clusters,)
        Lambda at which each cluster was born (roots: 0).
    kids : ndarray of int, shape (n_clusters - n_trees,)
        The clusters that are not roots, in condensed-tree order (by parent, left child first).
    """

    parent: np.ndarray
    root: np.ndarray
    tree_root: np.ndarray
    birth: np.ndarray
    kids: np.ndarray

    @classmethod
    def of(cls, condensed_tree: np.ndarray, n_samples: int, n_clusters: int) -> _ClusterTree:
        """The cluster rows of a condensed tree (from :func:`_condense_tree`) as a tree."""
        rows = condensed_tree[n_samples:]
        kids = rows["child"] - n_samples
        parent = np.arange(n_clusters)  # roots point to themselves
        parent[kids] = rows["parent"] - n_samples
        birth = np.zeros(n_clusters)
        birth[kids] = rows["value"]
        root = np.ones(n_clusters, dtype=bool)
        root[kids] = False
        return cls(parent, root, _resolve(parent, root), birth, kids)


def tree_to_labels(hierarchy: np.ndarray, n_samples: int, selection: Selection) -> np.ndarray:
    """HDBSCAN labels of a single-linkage forest (excess of mass selection).

    Parameters
    ----------
    hierarchy : ndarray of HIERARCHY_dtype, shape (n_samples - n_trees,)
        Children before parents; every tree has at least
        ``max(2, selection.min_cluster_size)`` points; ``left_node`` is the side holding the
        merging edge's left end.
    n_samples : int
        Number of points.
    selection : Selection
        The parameters of the cluster selection.

    Returns
    -------
    labels : ndarray of int64, shape (n_samples,)
        ``-1`` for noise, else the cluster's index ``0..n_clusters-1`` (``< n_samples``),
        in no particular order.
    """
    condensed = _condense_tree(hierarchy, n_samples, selection.min_cluster_size)
    stability = _compute_stability(condensed, n_samples)
    return _get_clusters(condensed, stability, n_samples, selection)


def _resolve(ptr: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Follow ``ptr`` from every index until an index with ``done`` set (pointer doubling).

    Parameters
    ----------
    ptr : ndarray of int, shape (m,)
        A forest of pointers; every chain reaches an index with ``done`` set.
    done : ndarray of bool, shape (m,)

    Returns
    -------
    end : ndarray of int, shape (m,)
        The first ``done`` index on each index's chain (itself if ``done``).
    """
    ptr = ptr.copy()
    todo = np.flatnonzero(~done[ptr])
    while todo.size:
        ptr[todo] = ptr[ptr[todo]]
        todo = todo[~done[ptr[todo]]]
    return ptr


def _condense_tree(hierarchy: np.ndarray, n_samples: int, min_cluster_size: int) -> np.ndarray:
    """Condense the forest: only splits into two parts of ``min_cluster_size`` make clusters.

    A tree's root is a cluster; so is each child of a merge whose two children both
    have at least ``min_cluster_size`` points. Every other node continues its parent's
    cluster, and a point leaves its cluster at the lambda of its lowest ancestor with
    at least ``min_cluster_size`` points.

    Parameters
    ----------
    hierarchy : ndarray of HIERARCHY_dtype, shape (n_merges,)
        As for :func:`tree_to_labels`.
    n_samples : int
        Number of points.
    min_cluster_size : int
        ``>= 2``.

    Returns
    -------
    condensed_tree : ndarray of CONDENSED_dtype, shape (n_samples + n_clusters - n_trees,)
        The ``n_samples`` point rows first, in point order; then one row per cluster that
        is not a root, by parent, the left child of each split first (hdbscan's order,
        which its float32 sum of the children's stabilities depends on).
    """
    n, m, mcs = n_samples, hierarchy.shape[0], min_cluster_size
    it: np.dtype[np.signedinteger[Any]] = np.dtype(np.int32 if n + m < 2**31 else np.int64)
    left = hierarchy["left_node"].astype(it)
    right = hierarchy["right_node"].astype(it)
    msize = hierarchy["cluster_size"].astype(it)
    dist = hierarchy["value"]
    size = np.concatenate((np.ones(n, dtype=it), msize))  # of every node
    mid = np.arange(m, dtype=it)
    with np.errstate(divide="ignore", over="ignore"):
        lam_merge = np.where(dist > 0.0, 1.0 / dist, np.inf)
    big = msize >= mcs  # points are never big (mcs >= 2)
    par_pt = np.empty(n, dtype=it)  # merge that absorbs each point
    par = np.full(m, -1, dtype=it)  # parent merge of each merge (-1: root)
    for side in (left, right):
        pt = side < n
        par_pt[side[pt]] = mid[pt]
        par[side[~pt] - n] = mid[~pt]
    is_top = par < 0
    split = (size[left] >= mcs) & (size[right] >= mcs)
    is_new = is_top | split[np.maximum(par, 0)]
    cluster_of = _resolve(np.where(is_new, mid, par), is_new | ~big)
    # The lowest big ancestor is fewer than min_cluster_size steps up.
    low_big = par_pt
    todo = np.flatnonzero(~big[low_big])
    while todo.size:
        low_big[todo] = par[low_big[todo]]
        todo = todo[~big[low_big[todo]]]

    clusters = np.flatnonzero(is_new).astype(it)  # children before parents
    cid = np.full(m, -1, dtype=it)
    cid[clusters] = np.arange(clusters.shape[0], dtype=it)
    kids = clusters[~is_top[clusters]]
    split_at = par[kids]
    is_left = left[split_at] == n + kids
    kids = kids[np.lexsort((~is_left, split_at))]  # by parent (one split each), left first
    split_at = par[kids]

    condensed = np.empty(n + kids.shape[0], dtype=CONDENSED_dtype)
    condensed["parent"][:n] = n + cid[cluster_of[low_big]]
    condensed["child"][:n] = np.arange(n)
    condensed["value"][:n] = lam_merge[low_big]
    condensed["cluster_size"][:n] = 1
    condensed["parent"][n:] = n + cid[cluster_of[split_at]]
    condensed["child"][n:] = n + cid[kids]
    condensed["value"][n:] = lam_merge[split_at]
    condensed["cluster_size"][n:] = msize[kids]
    return condensed


def _compute_stability(condensed_tree: np.ndarray, n_samples: int) -> np.ndarray:
    """Stability of each cluster: sum over its rows of ``(lambda - birth) * size``.

    Parameters
    ----------
    condensed_tree : ndarray of CONDENSED_dtype, shape (n_rows,)
        From :func:`_condense_tree`.
    n_samples : int
        Number of points.

    Returns
    -------
    stability : ndarray of float64, shape (n_clusters,)
        Indexed by cluster id minus ``n_samples``. A root's birth is 0; ``nan`` where a
        point and its cluster both sit at lambda ``inf`` (hdbscan gives ``nan`` too).
    """
    parent = condensed_tree["parent"] - n_samples
    child = condensed_tree["child"][n_samples:] - n_samples
    lam = condensed_tree["value"]
    n_clusters = int(parent.max()) + 1
    birth = np.zeros(n_clusters)
    birth[child] = lam[n_samples:]
    with np.errstate(invalid="ignore"):
        return np.bincount(parent, weights=(lam - birth[parent]) * condensed_tree["cluster_size"], minlength=n_clusters)


def _get_clusters(
    condensed_tree: np.ndarray, stability: np.ndarray, n_samples: int, selection: Selection
) -> np.ndarray:
    """Select clusters by excess of mass (then the epsilon search) and label the points.

    Parameters
    ----------
    condensed_tree : ndarray of CONDENSED_dtype, shape (n_rows,)
        From :func:`_condense_tree`.
    stability : ndarray of float64, shape (n_clusters,)
        From :func:`_compute_stability`.
    n_samples : int
        Number of points.
    selection : Selection
        As for :func:`tree_to_labels`.

    Returns
    -------
    labels : ndarray of int64, shape (n_samples,)
        The selected cluster of each point (cluster id minus ``n_samples``), ``-1`` for noise.
    """
    n_cl = stability.shape[0]
    tree = _ClusterTree.of(condensed_tree, n_samples, n_cl)
    kids = tree.kids
    # Every split is binary and its rows come left child first.
    kid1 = np.full(n_cl, -1, dtype=np.int64)
    kid2 = np.full(n_cl, -1, dtype=np.int64)
    kid1[tree.parent[kids[0::2]]] = kids[0::2]
    kid2[tree.parent[kids[1::2]]] = kids[1::2]
    chosen = _excess_of_mass(stability, kid1, kid2, tree, selection.allow_single_cluster)
    has_tree = np.bincount(tree.tree_root, minlength=n_cl)[tree.tree_root] > 1
    if selection.epsilon != 0.0 and has_tree.any():
        chosen = _epsilon_search(chosen, has_tree, tree, selection)
    points = condensed_tree[:n_samples]
    return _do_labelling(points["parent"] - n_samples, points["value"], chosen, tree, selection)


def _excess_of_mass(
    stability: np.ndarray,
    kid1: np.ndarray,
    kid2: np.ndarray,
    tree: _ClusterTree,
    allow_single_cluster: bool,
) -> np.ndarray:
    """hdbscan's excess-of-mass selection, bottom-up, one level of the cluster tree at a time.

    A cluster is kept when its stability is not below the float32 sum of its children's
    (left child first, as hdbscan's C ``float`` accumulator adds them); a kept cluster
    deselects its whole subtree. Roots take part only with ``allow_single_cluster``.

    Parameters
    ----------
    stability : ndarray of float64, shape (n_clusters,)
    kid1, kid2 : ndarray of int64, shape (n_clusters,)
        Left and right child cluster of each split, ``-1`` for leaves.
    tree : _ClusterTree
    allow_single_cluster : bool

    Returns
    -------
    selected : ndarray of bool, shape (n_clusters,)
    """
    n_cl = stability.shape[0]
    leaf = kid1 < 0
    subtree = stability.copy()
    keep = np.zeros(n_cl, dtype=bool)
    keep[leaf] = ~(0.0 > subtree[leaf])
    subtree[leaf] = np.where(keep[leaf], subtree[leaf], 0.0)
    done = leaf.copy()
    todo = np.flatnonzero(~leaf)
    while todo.size:
        now = done[kid1[todo]] & done[kid2[todo]]
        ready, todo = todo[now], todo[~now]
        s1 = subtree[kid1[ready]].astype(np.float32)
        total = (s1.astype(np.float64) + subtree[kid2[ready]]).astype(np.float32).astype(np.float64)
        gt = total > subtree[ready]
        subtree[ready] = np.where(gt, total, subtree[ready])
        keep[ready] = ~gt
        done[ready] = True
    keep &= ~tree.root | allow_single_cluster
    # Selected: kept, with no kept ancestor below the root.
    anc = _resolve(tree.parent, keep | tree.root)
    selected: np.ndarray = keep & ~(keep[anc] & ~tree.root)
    return selected


def _epsilon_search(eom: np.ndarray, has_tree: np.ndarray, tree: _ClusterTree, selection: Selection) -> np.ndarray:
    """hdbscan's ``cluster_selection_epsilon``: replace a selected cluster born below epsilon.

    A selected cluster whose birth distance is below ``epsilon`` gives way to its first
    ancestor born above epsilon (a child of the root stops at the root with
    ``allow_single_cluster``, at itself otherwise). hdbscan walks the selected leaves in
    turn and skips one inside an earlier pick's subtree; that cannot change the result:
    epsilons only shrink downwards and siblings share theirs, so picks never nest.

    Parameters
    ----------
    eom : ndarray of bool, shape (n_clusters,)
        Excess-of-mass selection.
    has_tree : ndarray of bool, shape (n_clusters,)
        The cluster's tree has more than one cluster.
    tree : _ClusterTree
    selection : Selection
        Its ``epsilon`` (``!= 0``) and ``allow_single_cluster``.

    Returns
    -------
    selected : ndarray of bool, shape (n_clusters,)
    """
    c_parent, c_root, birth, epsilon = tree.parent, tree.root, tree.birth, selection.epsilon
    n_cl = c_parent.shape[0]
    with np.errstate(divide="ignore"):
        eps_birth = np.where(birth > 0, 1.0 / np.where(birth > 0, birth, 1.0), np.inf)
    # Trees where EOM kept only the root keep it (only possible with allow_single_cluster).
    lone_root = has_tree & eom & c_root
    chosen: np.ndarray = eom & ~has_tree
    chosen |= lone_root
    other = has_tree & eom & ~c_root & ~lone_root[tree.tree_root]
    chosen |= other & ~(eps_birth < epsilon)
    cand = np.flatnonzero(other & (eps_birth < epsilon))
    if cand.size == 0:
        return chosen
    par = c_parent
    par_root = c_root[par] & ~c_root
    stop = par_root | (eps_birth[par] > epsilon) | c_root
    end = _resolve(np.where(stop, np.arange(n_cl), par), stop)
    pick = np.where(par_root[end], par[end] if selection.allow_single_cluster else end, par[end])
    chosen[pick[cand]] = True
    return chosen


def _do_labelling(
    point_cluster: np.ndarray,
    point_lambda: np.ndarray,
    selected: np.ndarray,
    tree: _ClusterTree,
    selection: Selection,
) -> np.ndarray:
    """Each point's nearest selected cluster at or above its own, as hdbscan's ``do_labelling``.

    A point whose chain reaches its root unselected is noise. A root selected alone
    (``allow_single_cluster``) keeps only the points that leave it late enough: at a
    lambda of at least ``1 / epsilon``, or without epsilon at least the largest lambda
    of the root's own rows.

    Parameters
    ----------
    point_cluster : ndarray of int, shape (n_samples,)
        Cluster each point leaves (cluster id minus ``n_samples``).
    point_lambda : ndarray of float64, shape (n_samples,)
        Lambda at which it leaves.
    selected : ndarray of bool, shape (n_clusters,)
        The selected clusters.
    tree : _ClusterTree
    selection : Selection
        Its ``epsilon`` and ``allow_single_cluster``.

    Returns
    -------
    labels : ndarray of int64, shape (n_samples,)
    """
    c_parent, c_root, tree_root, epsilon = tree.parent, tree.root, tree.tree_root, selection.epsilon
    n_cl = c_parent.shape[0]
    target = _resolve(np.where(selected, np.arange(n_cl), c_parent), selected | c_root)[point_cluster]
    at_root = c_root[target] & ~selected[target]
    n_sel = np.bincount(tree_root[selected], minlength=n_cl)
    single_root = c_root & selected & (n_sel == 1) & selection.allow_single_cluster
    at_root |= c_root[target] & selected[target] & ~single_root[target]
    if single_root.any():
        if epsilon != 0.0:
            keep = point_lambda >= 1.0 / epsilon
        else:
            top = np.full(n_cl, -np.inf)
            np.maximum.at(top, c_parent[tree.kids], tree.birth[tree.kids])
            at = np.flatnonzero(c_root[point_cluster])
            np.maximum.at(top, point_cluster[at], point_lambda[at])
            keep = point_lambda >= top[tree_root[point_cluster]]
        at_root |= single_root[target] & ~keep
    return np.where(at_root, -1, target).astype(np.int64)
