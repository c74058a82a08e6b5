"""Public entry points: label events with sessions and summarize the sessions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ._hdbscan1d import hdbscan_labels_blocks, number_by_first_point
from .blocks import block_bounds, check_timestamps
from .params import idle_threshold_ms, max_session_ms, method_params
from .rules import cut_long_sessions, split_reasons

__all__ = ["SessionLabels", "SessionTable", "label_and_cut", "label_sessions", "summarize_sessions"]


@dataclass(frozen=True)
class SessionTable:
    """One row per session, sorted by start; every field is an array of length k.

    Attributes
    ----------
    start_ms, end_ms : ndarray of int64
        First and last event of the session (epoch ms, inclusive).
    events : ndarray of int64
        Number of events in the session.
    instance : ndarray of int32
        Most frequent instance code (ties: the one seen first in the session).
    entry_screen, exit_screen : ndarray of int32
        Screen code of the first / last event.
    truncated_start, truncated_end : ndarray of bool
        The session may extend before / after the window that was read: unread
        events could have joined it.
    split_reason : ndarray of int8
        Why the session ended, a code into :data:`worker.core.SPLIT_REASONS`
        (``idle_gap``, ``max_length``, ``density_split``, ``end_of_data``).
    screens : ndarray of int64
        Number of distinct screen codes among the session's events.
    active_ms : ndarray of int64
        Sum of the gaps between consecutive events of the session that are at most
        ``active_gap_s`` (so at most ``end_ms - start_ms``).
    engaged : ndarray of bool
        GA4's rule: the session lasts at least ``engaged_min_s``, or has at least
        ``engaged_min_views`` events.
    """

    start_ms: np.ndarray
    end_ms: np.ndarray
    events: np.ndarray
    instance: np.ndarray
    entry_screen: np.ndarray
    exit_screen: np.ndarray
    truncated_start: np.ndarray
    truncated_end: np.ndarray
    split_reason: np.ndarray
    screens: np.ndarray
    active_ms: np.ndarray
    engaged: np.ndarray

    def __len__(self) -> int:
        return int(self.start_ms.shape[0])

    def take(self, index: np.ndarray) -> SessionTable:
        """Rows selected by a boolean mask or integer index."""
        return SessionTable(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})


def _block_ids(bounds: np.ndarray, n: int) -> np.ndarray:
    ids = np.zeros(n, dtype=np.int64)
    if bounds.shape[0] > 2:
        ids[bounds[1:-1]] = 1
        np.cumsum(ids, out=ids)
    return ids


class SessionLabels(NamedTuple):
    """Sessions of a timeline as :func:`label_and_cut` gives them.

    Attributes
    ----------
    labels : ndarray of int64, shape (n,)
        ``-1`` for noise, otherwise sessions numbered ``0..k-1`` by first event.
    cut : ndarray of bool, shape (k,)
        The session ended at ``max_session_s`` (a later piece of the same session
        follows). Give it to :func:`summarize_sessions`.
    """

    labels: np.ndarray
    cut: np.ndarray


def label_and_cut(
    t_ms: np.ndarray,
    method: str = "hdbscan",
    params: Mapping[str, Any] | None = None,
) -> SessionLabels:
    """Assign every event to a session, and say which sessions were cut at ``max_session_s``.

    Parameters
    ----------
    t_ms : ndarray of int64, shape (n,)
        Epoch milliseconds, sorted ascending; duplicates allowed.
    method : {"hdbscan", "gap"}
        ``gap``: a new session starts after more than ``max_gap_s`` of idle time;
        no noise. ``hdbscan``: the timeline is cut into activity blocks at idle gaps
        longer than ``split_idle_s``, and each block is clustered with HDBSCAN
        (same labels as ``hdbscan.HDBSCAN`` with the same parameters, see
        ``worker/core/README.md`` for ties). Then, with ``max_session_s``, a session
        longer than that is cut at fixed offsets from its first event.
    params : mapping or None
        Method parameters, see :func:`worker.core.method_params`.

    Returns
    -------
    SessionLabels
        The labels and, per session, whether it was cut.
    """
    p = method_params(method, params)
    t = check_timestamps(t_ms)
    labels, cut = cut_long_sessions(t, _cluster(t, method, p), max_session_ms(p))
    return SessionLabels(labels, cut)


def label_sessions(
    t_ms: np.ndarray,
    method: str = "hdbscan",
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The labels of :func:`label_and_cut` alone.

    Returns
    -------
    labels : ndarray of int64, shape (n,)
        ``-1`` for noise, otherwise sessions numbered ``0..k-1`` by first event.
    """
    return label_and_cut(t_ms, method, params).labels


def _cluster(t: np.ndarray, method: str, p: dict[str, Any]) -> np.ndarray:
    """Labels of the method alone, numbered by first event (no maximum length)."""
    n = t.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idle = idle_threshold_ms(method, p)
    if method == "gap":
        labels = np.zeros(n, dtype=np.int64)
        labels[1:] = np.diff(t) > idle
        return np.cumsum(labels, out=labels)
    labels = hdbscan_labels_blocks(
        t.astype(np.float64),
        block_bounds(t, idle),
        p["min_cluster_size"],
        p["min_samples"],
        p["cluster_selection_epsilon_s"] * 1000.0,
        p["allow_single_cluster"],
    )
    return number_by_first_point(labels)


def _mode_first_seen(session: np.ndarray, codes: np.ndarray, n_sessions: int) -> np.ndarray:
    """Per session, the most frequent code; ties go to the code seen first."""
    order = np.lexsort((codes, session))  # group (session, code), stable in index
    s_sorted = session[order]
    c_sorted = codes[order]
    new_group = np.ones(order.shape[0], dtype=bool)
    new_group[1:] = (s_sorted[1:] != s_sorted[:-1]) | (c_sorted[1:] != c_sorted[:-1])
    starts = np.flatnonzero(new_group)
    counts = np.diff(np.append(starts, order.shape[0]))
    g_session = s_sorted[starts]
    g_code = c_sorted[starts]
    g_first = np.minimum.reduceat(order, starts)
    pick = np.lexsort((g_first, -counts, g_session))
    g_session_sorted = g_session[pick]
    head = np.ones(pick.shape[0], dtype=bool)
    head[1:] = g_session_sorted[1:] != g_session_sorted[:-1]
    out = np.zeros(n_sessions, dtype=codes.dtype)
    out[g_session_sorted[head]] = g_code[pick][head]
    return out


def _distinct_per_session(session: np.ndarray, codes: np.ndarray, n_sessions: int) -> np.ndarray:
    """Per session, how many distinct codes its events have."""
    if session.shape[0] == 0:
        return np.zeros(n_sessions, dtype=np.int64)
    width = int(codes.max()) + 1 if codes.size else 1
    pairs = session.astype(np.int64) * width + codes.astype(np.int64)
    if n_sessions * width <= 4 * session.shape[0] + (1 << 22):
        # a (session, code) bitmap: linear time, where sorting the pairs dominated the summary
        seen = np.zeros(n_sessions * width, dtype=bool)
        seen[pairs] = True
        counts: np.ndarray = np.count_nonzero(seen.reshape(n_sessions, width), axis=1)
        return counts.astype(np.int64)
    pairs = np.unique(pairs)
    return np.bincount(pairs // width, minlength=n_sessions).astype(np.int64)


def _active_ms(session: np.ndarray, t: np.ndarray, n_sessions: int, gap_ms: int) -> np.ndarray:
    """Per session, the sum of the gaps between its consecutive events that are <= ``gap_ms``.

    ``session`` and ``t`` are the member events in time order; a session's events need not be
    contiguous (noise may fall between them), so they are grouped first, in time order."""
    order = np.argsort(session, kind="stable")
    s = session[order]
    d = np.diff(t[order])
    keep = (s[1:] == s[:-1]) & (d <= gap_ms)
    # float64 sums of whole ms are exact below 2**53 ms (285,000 years)
    return np.bincount(s[1:][keep], weights=d[keep], minlength=n_sessions).astype(np.int64)


def summarize_sessions(
    t_ms: np.ndarray,
    labels: np.ndarray,
    screen_codes: np.ndarray,
    instance_codes: np.ndarray,
    *,
    read_start_ms: int | None = None,
    read_end_ms: int | None = None,
    method: str = "hdbscan",
    params: Mapping[str, Any] | None = None,
    cut: np.ndarray | None = None,
) -> SessionTable:
    """One row per session of ``labels`` (noise is dropped).

    Parameters
    ----------
    t_ms : ndarray of int64, shape (n,)
        The timestamps that were labelled (sorted).
    labels : ndarray of int, shape (n,)
        Output of :func:`label_sessions` for ``t_ms`` with the same method/params.
    screen_codes, instance_codes : ndarray of int, shape (n,)
        Small integer codes; the caller maps them to strings.
    read_start_ms, read_end_ms : int or None
        Window that was read; ``None`` means unbounded (nothing unread on that side).
    method, params
        As given to :func:`label_sessions`; they define the idle threshold used
        for the truncation flags.
    cut : ndarray of bool, shape (k,), or None
        From :func:`label_and_cut`; required when
        ``max_session_s`` is set (otherwise no session was cut).

    Returns
    -------
    SessionTable
        Sorted by start. ``screens``, ``active_ms`` and ``engaged`` follow the
        parameters ``active_gap_s``, ``engaged_min_s`` and ``engaged_min_views``.
        ``truncated_start`` is set on every session of the first
        activity block when that block starts no more than the idle threshold
        after ``read_start_ms`` (unread earlier events could belong to it);
        ``truncated_end`` likewise at the other edge. ``split_reason``: see
        :func:`worker.core.rules.split_reasons`.
    """
    p = method_params(method, params)
    t = check_timestamps(t_ms)
    labels = np.asarray(labels, dtype=np.int64)
    screen = np.asarray(screen_codes)
    inst = np.asarray(instance_codes)
    n = t.shape[0]
    for name, arr in (("labels", labels), ("screen_codes", screen), ("instance_codes", inst)):
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    screen = screen.astype(np.int32, copy=False)
    inst = inst.astype(np.int32, copy=False)

    member = np.flatnonzero(labels >= 0)
    k = int(labels.max()) + 1 if member.size else 0
    lab = labels[member]
    if k and np.any(np.bincount(lab, minlength=k) == 0):
        raise ValueError("labels must number sessions 0..k-1 without holes")
    first = np.full(k, n, dtype=np.int64)
    last = np.full(k, -1, dtype=np.int64)
    np.minimum.at(first, lab, member)
    np.maximum.at(last, lab, member)
    events = np.bincount(lab, minlength=k).astype(np.int64)
    instance = _mode_first_seen(lab, inst[member], k)

    if cut is None:
        if max_session_ms(p) is not None:
            raise ValueError("cut is required with max_session_s: use label_and_cut(...).cut")
        cut = np.zeros(k, dtype=bool)
    cut = np.asarray(cut, dtype=bool)
    if cut.shape != (k,):
        raise ValueError(f"cut must have shape ({k},), got {cut.shape}")

    idle = idle_threshold_ms(method, p)
    trunc_start = np.zeros(k, dtype=bool)
    trunc_end = np.zeros(k, dtype=bool)
    block_end = np.zeros(k, dtype=np.int64)
    if k:
        bounds = block_bounds(t, idle)
        block = _block_ids(bounds, n)
        block_end = bounds[1:][block[last]] - 1
        if read_start_ms is not None and int(t[0]) - int(read_start_ms) <= idle:
            trunc_start = block[first] == 0
        if read_end_ms is not None and int(read_end_ms) - int(t[-1]) <= idle:
            trunc_end = block[last] == block[-1]

    start = t[first]
    duration_ms = t[last] - start if k else np.zeros(0, dtype=np.int64)
    engaged = (duration_ms >= p["engaged_min_s"] * 1000.0) | (events >= p["engaged_min_views"])
    order = np.argsort(start, kind="stable")
    table = SessionTable(
        start_ms=start,
        end_ms=t[last],
        events=events,
        instance=instance.astype(np.int32),
        entry_screen=screen[first],
        exit_screen=screen[last],
        truncated_start=trunc_start,
        truncated_end=trunc_end,
        split_reason=split_reasons(last, block_end, cut, trunc_end, density=method == "hdbscan"),
        screens=_distinct_per_session(lab, screen[member], k),
        active_ms=_active_ms(lab, t[member], k, int(np.floor(p["active_gap_s"] * 1000.0))),
        engaged=engaged,
    )
    return table if np.all(order[:-1] < order[1:]) else table.take(order)
