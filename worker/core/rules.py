"""Session rules applied after clustering: the maximum length, and why each session ended."""

from __future__ import annotations

import numpy as np

from sessionizer.methods import SPLIT_REASONS as _MEANINGS

from ._hdbscan1d import number_by_first_point

__all__ = ["SPLIT_REASONS", "cut_long_sessions", "split_reasons"]

# ``SessionTable.split_reason`` holds indices into this tuple (sessionizer/methods.py says what
# each value means; so does worker/core/README.md).
SPLIT_REASONS: tuple[str, ...] = tuple(_MEANINGS)
END_OF_DATA, MAX_LENGTH, DENSITY_SPLIT, IDLE_GAP = (
    SPLIT_REASONS.index(r) for r in ("end_of_data", "max_length", "density_split", "idle_gap")
)


def cut_long_sessions(t_ms: np.ndarray, labels: np.ndarray, max_ms: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Cut every session longer than ``max_ms`` at fixed offsets from its first event.

    A session starting at ``s`` keeps its events in ``[s, s + max_ms]``; the next piece
    holds those in ``(s + max_ms, s + 2 max_ms]``, and so on (empty pieces are no
    session). The offsets depend only on the session's own first event, so a session
    read whole is cut the same way whatever range was asked.

    Parameters
    ----------
    t_ms : ndarray of int64, shape (n,)
        Sorted timestamps.
    labels : ndarray of int64, shape (n,)
        Sessions numbered ``0..k-1`` by first event, ``-1`` for noise.
    max_ms : int or None
        Longest session in milliseconds (``>= 1``); ``None`` cuts nothing.

    Returns
    -------
    labels : ndarray of int64, shape (n,)
        The pieces, numbered by first event (``-1`` kept).
    cut : ndarray of bool, shape (k',)
        Per piece: a later piece of the same session follows it (it ended at ``max_ms``).
    """
    k = max(int(labels.max()) + 1, 0) if labels.size else 0
    if max_ms is None or k == 0:
        return labels, np.zeros(k, dtype=bool)
    member = np.flatnonzero(labels >= 0)
    lab = labels[member]
    tm = t_ms[member]
    first = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, lab, tm)
    piece = np.maximum(tm - first[lab] - 1, 0) // int(max_ms)
    if not piece.any():
        return labels, np.zeros(k, dtype=bool)
    last_piece = np.zeros(k, dtype=np.int64)
    np.maximum.at(last_piece, lab, piece)
    # One id per (session, piece): offsets of each session's pieces, then the piece.
    base = np.concatenate(([0], np.cumsum(last_piece + 1)[:-1]))
    pieces = np.full(labels.shape[0], -1, dtype=np.int64)
    pieces[member] = base[lab] + piece
    out = number_by_first_point(pieces)
    cut = np.zeros(int(out[member].max()) + 1, dtype=bool)
    cut[out[member]] = piece < last_piece[lab]
    return out, cut


def split_reasons(
    last: np.ndarray,
    block_end: np.ndarray,
    cut: np.ndarray,
    truncated_end: np.ndarray,
    density: bool,
) -> np.ndarray:
    """Why each session ended, as codes into :data:`SPLIT_REASONS`.

    Parameters
    ----------
    last : ndarray of int64, shape (k,)
        Index of each session's last event.
    block_end : ndarray of int64, shape (k,)
        Index of the last event of that event's activity block.
    cut : ndarray of bool, shape (k,)
        The session was cut at the maximum length (a later piece follows).
    truncated_end : ndarray of bool, shape (k,)
        Unread events could have continued it.
    density : bool
        Sessions come from a density clustering inside blocks (``hdbscan``).

    Returns
    -------
    reason : ndarray of int8, shape (k,)
        ``end_of_data`` where ``truncated_end``; else ``max_length`` where ``cut``; else
        ``density_split`` where later events of its block follow (``hdbscan`` put them
        in other sessions or noise); else ``idle_gap``.
    """
    reason = np.full(last.shape[0], IDLE_GAP, dtype=np.int8)
    if density:
        reason[last < block_end] = DENSITY_SPLIT
    reason[cut] = MAX_LENGTH
    reason[truncated_end] = END_OF_DATA
    return reason
