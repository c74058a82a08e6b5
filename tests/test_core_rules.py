"""Session rules: the maximum session length and why each session ended."""

import numpy as np
import pytest

from benchmarks.workloads import generate
from worker.core import SPLIT_REASONS, label_and_cut, label_sessions, method_params, summarize_sessions

MIN = 60_000


def _table(t, method, params, **window):
    labels, cut = label_and_cut(t, method, params)
    codes = np.zeros(t.shape[0], dtype=np.int32)
    table = summarize_sessions(t, labels, codes, codes, method=method, params=params, cut=cut, **window)
    return labels, table, [SPLIT_REASONS[c] for c in table.split_reason.tolist()]


@pytest.mark.parametrize("method", ["gap", "hdbscan"])
def test_long_session_is_cut_at_fixed_offsets_from_its_first_event(method):
    # One event every 10 minutes for 150 minutes: one session of 16 events, 2.5 h long.
    t = np.arange(16, dtype=np.int64) * 10 * MIN
    params = {"max_session_s": 3600}
    if method == "hdbscan":
        params["min_cluster_size"] = 2
    labels, table, reasons = _table(t, method, params)
    # [0, 60 min] (the event at exactly 60 min stays), (60, 120], (120, 150]
    assert labels.tolist() == [0] * 7 + [1] * 6 + [2] * 3
    assert (table.end_ms - table.start_ms).tolist() == [60 * MIN, 50 * MIN, 20 * MIN]
    assert reasons == ["max_length", "max_length", "idle_gap"]
    assert label_sessions(t, method, {**params, "max_session_s": None}).tolist() == [0] * 16


def test_offsets_do_not_depend_on_other_sessions():
    # Two sessions 2 h apart; the second's cuts count from its own first event.
    t = np.concatenate([np.arange(8) * 10 * MIN, 200 * MIN + 7 * MIN + np.arange(8) * 10 * MIN]).astype(np.int64)
    labels = label_sessions(t, "gap", {"max_session_s": 3600})
    assert labels.tolist() == [0] * 7 + [1] + [2] * 7 + [3]
    # The same second session alone is cut the same way.
    alone = label_sessions(t[8:], "gap", {"max_session_s": 3600})
    assert alone.tolist() == (labels[8:] - 2).tolist()


def test_hdbscan_reasons_density_split_idle_gap_end_of_data():
    # Two bursts of 10 events 25 min apart (one activity block: split_idle_s is 1 h,
    # but epsilon 20 min lets HDBSCAN split them), then a third burst 2 h later.
    burst = np.arange(10, dtype=np.int64) * 1000
    t = np.concatenate([burst, 25 * MIN + burst, 180 * MIN + burst])
    _, table, reasons = _table(t, "hdbscan", None)
    assert table.events.tolist() == [10, 10, 10]
    assert reasons == ["density_split", "idle_gap", "idle_gap"]
    # Read up to 10 minutes after the last event: the last block may go on.
    _, table, reasons = _table(t, "hdbscan", None, read_end_ms=int(t[-1]) + 10 * MIN)
    assert reasons == ["density_split", "idle_gap", "end_of_data"]
    assert table.truncated_end.tolist() == [False, False, True]


def test_gap_sessions_end_at_an_idle_gap():
    t = np.array([0, MIN, 40 * MIN, 41 * MIN], dtype=np.int64)
    _, table, reasons = _table(t, "gap", None, read_start_ms=-10 * MIN, read_end_ms=int(t[-1]) + 10 * MIN)
    assert reasons == ["idle_gap", "end_of_data"]


def test_pieces_and_reasons_on_a_timeline():
    """Against a plain loop over the uncut sessions: windows of 30 min from each first event."""
    tl = generate("heavy", weeks=1, seed=3)
    params = {"max_session_s": 1800, "cluster_selection_epsilon_s": 300}
    _, table, reasons = _table(tl.t_ms, "hdbscan", params)
    whole = label_sessions(tl.t_ms, "hdbscan", {**params, "max_session_s": None})
    expected = []
    for k in range(int(whole.max()) + 1):
        t = tl.t_ms[whole == k]
        piece = np.maximum(t - t[0] - 1, 0) // 1_800_000
        # the uncut session ends inside its block when an event follows within split_idle_s
        inside = bool(np.any((tl.t_ms > t[-1]) & (tl.t_ms <= t[-1] + 3_600_000)))
        for j in np.unique(piece).tolist():
            part = t[piece == j]
            last = j == piece.max()
            expected.append(
                (
                    int(part[0]),
                    int(part[-1]),
                    int(part.size),
                    "max_length" if not last else "density_split" if inside else "idle_gap",
                )
            )
    assert sorted(expected) == list(zip(table.start_ms.tolist(), table.end_ms.tolist(), table.events.tolist(), reasons))
    assert {"max_length", "density_split", "idle_gap"} <= set(reasons)
    assert np.all(table.end_ms - table.start_ms <= 1_800_000)


@pytest.mark.parametrize("method", ["gap", "hdbscan"])
@pytest.mark.parametrize("bad", [0, 0.5, -1, "x", True, float("inf")])
def test_bad_max_session_s_is_refused(method, bad):
    with pytest.raises(ValueError, match="max_session_s"):
        method_params(method, {"max_session_s": bad})


def test_max_session_s_is_off_by_default_and_cut_is_required_with_it():
    assert method_params("gap", None)["max_session_s"] is None
    assert method_params("hdbscan", {"max_session_s": 7200})["max_session_s"] == 7200.0
    t = np.arange(3, dtype=np.int64)
    codes = np.zeros(3, dtype=np.int32)
    labels = label_sessions(t, "gap", {"max_session_s": 60})
    with pytest.raises(ValueError, match="cut"):
        summarize_sessions(t, labels, codes, codes, method="gap", params={"max_session_s": 60})
