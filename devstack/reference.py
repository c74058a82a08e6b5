"""Reference labelling of one block with the ``hdbscan`` package.

Kept apart from the NumPy core: only the equality tests and the speed benchmark import
it (lazily), so ``worker.core`` never needs ``hdbscan`` at run time.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["hdbscan_block_labels"]


def hdbscan_block_labels(
    x: np.ndarray,
    min_cluster_size: int,
    min_samples: int,
    cluster_selection_epsilon: float = 0.0,
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """Labels of ``hdbscan.HDBSCAN`` on the 1-D points ``x`` (same units as epsilon).

    Inputs too small for hdbscan (it fails below two points) are all noise, which is
    also what hdbscan returns whenever no cluster can be formed.
    """
    import hdbscan

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    need = min_cluster_size if allow_single_cluster else 2 * min_cluster_size
    if n < max(2, need):
        return np.full(n, -1, dtype=np.int64)
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=int(min_cluster_size),
        min_samples=int(min_samples),
        cluster_selection_epsilon=float(cluster_selection_epsilon),
        allow_single_cluster=bool(allow_single_cluster),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = clusterer.fit_predict(x.reshape(-1, 1))
    return np.asarray(labels, dtype=np.int64)
