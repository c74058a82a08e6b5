"""Activity blocks: maximal runs of events without a long idle gap."""

from __future__ import annotations

import numpy as np

__all__ = ["block_bounds", "check_timestamps"]


def check_timestamps(t_ms: np.ndarray) -> np.ndarray:
    """Return ``t_ms`` as a 1-D int64 array, or raise ``ValueError``.

    Timestamps must be sorted ascending (duplicates allowed).
    """
    t = np.asarray(t_ms)
    if t.ndim != 1:
        raise ValueError(f"t_ms must be one-dimensional, got shape {t.shape}")
    if t.size and t.dtype.kind not in "iu":
        if t.dtype.kind == "f" and np.all(np.isfinite(t)) and np.all(t == np.round(t)):
            t = t.astype(np.int64)
        else:
            raise ValueError(f"t_ms must hold integer epoch milliseconds, got dtype {t.dtype}")
    t = t.astype(np.int64, copy=False)
    if t.size > 1 and np.any(t[1:] < t[:-1]):
        raise ValueError("t_ms must be sorted ascending")
    return t


def block_bounds(t_ms: np.ndarray, idle_ms: int) -> np.ndarray:
    """Start offsets of activity blocks, plus ``len(t_ms)`` as a final sentinel.

    A new block starts after every gap strictly longer than ``idle_ms``.

    Parameters
    ----------
    t_ms : ndarray of int64, shape (n,)
        Sorted timestamps.
    idle_ms : int
        Idle threshold in milliseconds.

    Returns
    -------
    bounds : ndarray of int64, shape (n_blocks + 1,)
        Block ``b`` is ``t_ms[bounds[b]:bounds[b + 1]]``; empty input gives ``[0]``.
    """
    n = t_ms.shape[0]
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    cuts = np.flatnonzero(np.diff(t_ms) > idle_ms) + 1
    return np.concatenate(([0], cuts, [n])).astype(np.int64)
