"""Entry points into the 1-D HDBSCAN kernel that only tests use.

The kernel (``worker/core/_linkage.py``, ``worker/core/_tree.py``) works on every block
of a timeline at once; these wrap its steps for one block, so that tests can compare
each step with a brute force or with the ``hdbscan`` package.
"""

from __future__ import annotations

import numpy as np

from worker.core import _linkage
from worker.core._hdbscan1d import hdbscan_labels_blocks, number_by_first_point


def core_distances(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each sorted point to its ``k``-th nearest other point (``n >= k + 1``)."""
    n = x.shape[0]
    return _linkage._core_distances(
        np.asarray(x, dtype=np.float64), np.zeros(n, np.int64), np.full(n, n, np.int64), np.full(n, k, np.int64)
    )


def candidate_edges(x: np.ndarray, core: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate edges ``(u, v, w)`` of one block, sorted in the tie order."""
    n = x.shape[0]
    x = np.asarray(x, dtype=np.float64)
    u, v, w, raw = _linkage._band_edges(x, core, np.full(n, n, np.int64), np.full(n, k, np.int64))
    order = _linkage._edge_order(u, v, w, raw)
    return u[order], v[order], w[order]


def spanning_tree_ranks(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Ranks of the minimum spanning forest edges among edges given in rank order."""
    return np.flatnonzero(_linkage._merge_rounds(n, u, v)[0] >= 0)


def hdbscan_labels_1d(
    x: np.ndarray,
    min_cluster_size: int,
    min_samples: int,
    cluster_selection_epsilon: float = 0.0,
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """HDBSCAN labels of one block of sorted points, clusters numbered by first point."""
    x = np.asarray(x, dtype=np.float64)
    bounds = np.array([0, x.shape[0]], dtype=np.int64)
    labels = hdbscan_labels_blocks(
        x, bounds, min_cluster_size, min_samples, cluster_selection_epsilon, allow_single_cluster
    )
    return number_by_first_point(labels)
