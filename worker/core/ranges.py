"""A range of a timeline: what a job returns for ``[start_ms, end_ms]``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .blocks import check_timestamps
from .params import method_params, read_margin_ms
from .sessions import SessionTable, label_and_cut, summarize_sessions

__all__ = ["RangeSessions", "select_overlapping", "sessions_in_range"]


@dataclass(frozen=True)
class RangeSessions:
    """The sessions of a range, as a job returns them.

    Attributes
    ----------
    sessions : SessionTable
        The sessions overlapping the range, whole (they may start before it or end after it).
    noise_events : int
        Events inside the range that belong to no session (``hdbscan`` noise).
    """

    sessions: SessionTable
    noise_events: int


def select_overlapping(table: SessionTable, start_ms: int, end_ms: int) -> np.ndarray:
    """Boolean mask of the sessions that overlap ``[start_ms, end_ms]`` (inclusive)."""
    return (table.end_ms >= int(start_ms)) & (table.start_ms <= int(end_ms))


def sessions_in_range(
    t_ms: np.ndarray,
    screen_codes: np.ndarray,
    instance_codes: np.ndarray,
    start_ms: int,
    end_ms: int,
    method: str = "hdbscan",
    params: Mapping[str, Any] | None = None,
) -> RangeSessions:
    """The sessions of one timeline overlapping ``[start_ms, end_ms]`` (inclusive).

    The events within :func:`worker.core.read_margin_ms` of the range are labelled and
    summarized, as read from ``[start_ms - margin, end_ms + margin]``, and the sessions
    overlapping the range are kept. A timeline holding only those events (what a job's
    units read) gives the same result as the whole timeline: that is why a session lying
    inside the range is the same whatever wider range is asked.

    Parameters
    ----------
    t_ms : ndarray of int64, shape (n,)
        Epoch milliseconds, sorted ascending; events outside the read window are ignored.
    screen_codes, instance_codes : ndarray of int, shape (n,)
        Small integer codes, as for :func:`worker.core.summarize_sessions`.
    start_ms, end_ms : int
        The range asked.
    method, params
        As for :func:`worker.core.label_sessions`.

    Returns
    -------
    RangeSessions
    """
    p = method_params(method, params)
    t = check_timestamps(t_ms)
    screen, instance = np.asarray(screen_codes), np.asarray(instance_codes)
    for name, arr in (("screen_codes", screen), ("instance_codes", instance)):
        if arr.shape != t.shape:
            raise ValueError(f"{name} must have shape {t.shape}, got {arr.shape}")
    margin = read_margin_ms(method, p)
    lo, hi = int(start_ms) - margin, int(end_ms) + margin
    # t is sorted: the read window is a slice (a view, no copy)
    read = slice(int(np.searchsorted(t, lo, side="left")), int(np.searchsorted(t, hi, side="right")))
    t = t[read]
    labels, cut = label_and_cut(t, method, p)
    table = summarize_sessions(
        t,
        labels,
        screen[read],
        instance[read],
        read_start_ms=lo,
        read_end_ms=hi,
        method=method,
        params=p,
        cut=cut,
    )
    in_range = (t >= start_ms) & (t <= end_ms)
    noise = int(np.count_nonzero((labels < 0) & in_range))
    return RangeSessions(table.take(select_overlapping(table, start_ms, end_ms)), noise)
