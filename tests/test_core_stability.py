"""Range stability and truncation flags of the job's view of a range."""

import numpy as np
import pytest

from benchmarks.bench_quality import _rows_inside
from benchmarks.workloads import EPOCH_MS, FAMILIES, WEEK_MS, generate
from worker.core import label_sessions, read_margin_ms, sessions_in_range, summarize_sessions

HOUR = 3_600_000


def _view(tl, method, params, start_ms, end_ms):
    """What a job returns for [start_ms, end_ms] of the timeline (worker.core.sessions_in_range)."""
    return sessions_in_range(tl.t_ms, tl.screen, tl.instance, start_ms, end_ms, method, params).sessions


@pytest.mark.parametrize("params", [None, {"max_session_s": 1800}])
@pytest.mark.parametrize("method", ["hdbscan", "gap"])
@pytest.mark.parametrize("family", FAMILIES)
def test_inner_week_identical_for_week_and_wide_range(family, method, params):
    tl = generate(family, weeks=5, seed=2)
    start = EPOCH_MS + 2 * WEEK_MS
    end = start + WEEK_MS - 1
    week = _view(tl, method, params, start, end)
    wide = _view(tl, method, params, start - 2 * WEEK_MS, end + 2 * WEEK_MS)
    inner = _rows_inside(week, start, end)
    assert inner and inner == _rows_inside(wide, start, end)
    # Sessions crossing the week's edges come back whole: the same rows as the wide view.
    crossing = week.take((week.start_ms < start) | (week.end_ms > end))
    wide_starts = set(wide.start_ms.tolist())
    assert set(crossing.start_ms.tolist()) <= wide_starts


@pytest.mark.parametrize("params", [None, {"max_session_s": 1800}])
@pytest.mark.parametrize("method", ["hdbscan", "gap"])
def test_range_of_the_events_read_equals_range_of_the_whole_timeline(method, params):
    # A unit holds only the events of the read window: its view is the whole timeline's.
    tl = generate("heavy", weeks=5, seed=3)
    start = EPOCH_MS + 2 * WEEK_MS + 5 * HOUR
    end = start + 2 * 24 * HOUR
    margin = read_margin_ms(method, params)
    read = (tl.t_ms >= start - margin) & (tl.t_ms <= end + margin)
    whole = sessions_in_range(tl.t_ms, tl.screen, tl.instance, start, end, method, params)
    unit = sessions_in_range(tl.t_ms[read], tl.screen[read], tl.instance[read], start, end, method, params)
    assert len(whole.sessions) > 0 and unit.noise_events == whole.noise_events
    for name in whole.sessions.__dataclass_fields__:
        assert np.array_equal(getattr(unit.sessions, name), getattr(whole.sessions, name)), name
    # the kept sessions overlap the range; noise is counted inside the range only
    assert np.all((whole.sessions.end_ms >= start) & (whole.sessions.start_ms <= end))
    labels = label_sessions(tl.t_ms[read], method, params)
    inside = (tl.t_ms[read] >= start) & (tl.t_ms[read] <= end)
    assert whole.noise_events == int(np.count_nonzero((labels < 0) & inside))


def test_range_refuses_codes_of_another_length():
    t = np.arange(5, dtype=np.int64)
    with pytest.raises(ValueError, match="screen_codes"):
        sessions_in_range(t, np.zeros(4, dtype=np.int32), np.zeros(5, dtype=np.int32), 0, 4, "gap")


@pytest.mark.parametrize("method", ["hdbscan", "gap"])
def test_block_longer_than_margin_is_flagged_truncated(method):
    # A bot emitting every minute for 3 days: longer than the default 1-day span.
    t = EPOCH_MS + np.arange(3 * 24 * 60, dtype=np.int64) * 60_000
    margin = read_margin_ms(method, None)
    start, end = EPOCH_MS + 36 * HOUR, EPOCH_MS + 37 * HOUR
    lo, hi = start - margin, end + margin
    sel = t[(t >= lo) & (t <= hi)]
    labels = label_sessions(sel, method)
    codes = np.zeros(sel.shape[0], dtype=np.int32)
    table = summarize_sessions(sel, labels, codes, codes, read_start_ms=lo, read_end_ms=hi, method=method)
    assert len(table) >= 1
    assert table.truncated_start[0] and table.truncated_end[-1]


@pytest.mark.parametrize("method", ["hdbscan", "gap"])
def test_session_read_whole_is_not_flagged(method):
    t = EPOCH_MS + 10 * HOUR + np.arange(60, dtype=np.int64) * 20_000
    margin = read_margin_ms(method, None)
    lo, hi = EPOCH_MS + 10 * HOUR - margin, EPOCH_MS + 11 * HOUR + margin
    labels = label_sessions(t, method)
    codes = np.zeros(t.shape[0], dtype=np.int32)
    table = summarize_sessions(t, labels, codes, codes, read_start_ms=lo, read_end_ms=hi, method=method)
    assert len(table) == 1 and table.events[0] == 60
    assert not table.truncated_start[0] and not table.truncated_end[0]
    # The same session read from an edge 10 minutes before it is flagged.
    table = summarize_sessions(t, labels, codes, codes, read_start_ms=int(t[0]) - 600_000, method=method)
    assert table.truncated_start[0] and not table.truncated_end[0]


def test_hdbscan_labels_do_not_depend_on_events_in_other_blocks():
    tl = generate("heavy", weeks=3, seed=5)
    cut = np.searchsorted(tl.t_ms, EPOCH_MS + WEEK_MS)
    # Find a block boundary (idle gap > split_idle_s) after one week.
    gaps = np.flatnonzero(np.diff(tl.t_ms[cut:]) > 3_600_000)
    b = cut + int(gaps[0]) + 1
    whole = label_sessions(tl.t_ms, "hdbscan")
    tail = label_sessions(tl.t_ms[b:], "hdbscan")
    head = whole[b:]
    assert np.array_equal(np.where(head >= 0, head - head[head >= 0].min(), -1), tail)
