"""The analytics fields of the core's session summary (screens, engaged, active time) against a
per-session reference written plainly, and the job figures of sessionizer/analytics.py."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from sessionizer.analytics import job_stats, quantile, session_id
from worker.core import label_and_cut, method_params, summarize_sessions


def planted(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bursts of events seconds apart, separated by idle gaps of minutes to hours; a few screens."""
    rng = np.random.default_rng(seed)
    kind = rng.random(n)
    gaps = np.select(
        [kind < 0.12, kind < 0.3],
        [rng.integers(3_700_000, 7_200_000, n), rng.integers(60_000, 300_000, n)],
        rng.integers(200, 8_000, n),
    )
    t = np.cumsum(gaps).astype(np.int64) + 1_600_000_000_000
    screen = rng.integers(0, 7, n).astype(np.int32)
    instance = rng.integers(0, 2, n).astype(np.int32)
    return t, screen, instance


@pytest.mark.parametrize("method", ["gap", "hdbscan"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_screens_engaged_and_active_match_a_plain_reference(method: str, seed: int) -> None:
    t, screen, instance = planted(seed)
    params = {"engaged_min_s": 45.0, "engaged_min_views": 8, "active_gap_s": 90.0}
    labels, cut = label_and_cut(t, method, params)
    table = summarize_sessions(t, labels, screen, instance, method=method, params=params, cut=cut)
    assert len(table) > 20
    for i in range(len(table)):
        start, end = int(table.start_ms[i]), int(table.end_ms[i])
        # the session's events: those of its label (labels are numbered by first event)
        label = labels[np.searchsorted(t, start)]
        members = np.flatnonzero(labels == label)
        times = t[members]
        assert (int(times[0]), int(times[-1])) == (start, end)
        assert table.screens[i] == len(set(screen[members].tolist()))
        assert table.active_ms[i] == sum(d for d in np.diff(times).tolist() if d <= 90_000)
        assert 0 <= table.active_ms[i] <= end - start
        assert table.engaged[i] == ((end - start) >= 45_000 or len(members) >= 8)
    assert 0 < table.engaged.sum() < len(table)  # both kinds are planted
    assert np.any(table.active_ms < table.end_ms - table.start_ms)


def test_noise_between_a_sessions_events_is_not_its_active_time() -> None:
    # hdbscan leaves the lone event in the middle as noise only if it is far from both sides;
    # a hand-made labelling shows the grouping: session 0's events are not contiguous
    t = np.array([0, 1000, 2000, 3000, 4000], dtype=np.int64)
    labels = np.array([0, 0, -1, 0, 1])
    table = summarize_sessions(
        t, labels, np.array([1, 2, 3, 2, 1]), np.zeros(5, dtype=np.int32), method="gap", params={"active_gap_s": 1.5}
    )
    assert table.active_ms.tolist() == [1000, 0]  # 0->1000 counts; 1000->3000 is a 2 s gap
    assert table.screens.tolist() == [2, 1]
    assert table.engaged.tolist() == [True, False]  # 3 events >= 2; one event of no length


def test_engagement_parameters_are_validated_as_declared() -> None:
    assert method_params("gap", {})["engaged_min_views"] == 2
    with pytest.raises(ValueError, match="engaged_min_views"):
        method_params("hdbscan", {"engaged_min_views": 0})
    with pytest.raises(ValueError, match="active_gap_s"):
        method_params("gap", {"active_gap_s": -1})


def test_session_id_is_16_hex_of_its_three_parts_only() -> None:
    sid = session_id("anes", "", 1_600_000_000_123)
    assert len(sid) == 16 and int(sid, 16) >= 0
    assert sid == session_id("anes", "", 1_600_000_000_123)
    others = {
        session_id("anes", "", 1_600_000_000_124),
        session_id("anes", "web", 1_600_000_000_123),
        session_id("anes1", "", 1_600_000_000_123),
        session_id("anes", "1", 1_600_000_000_123),
    }
    assert sid not in others and len(others) == 4


def test_job_stats_over_every_unit() -> None:
    units = [
        orjson.dumps(
            [{"user": "a", "duration_s": d, "engaged": e} for d, e in ((0.0, False), (30.0, True), (10.0, True))]
        ),
        orjson.dumps([]),
        orjson.dumps([{"user": "b", "duration_s": 100.0, "engaged": True}]),
    ]
    stats = job_stats(units)
    assert stats["engaged_sessions"] == 3 and stats["bounce_rate"] == 0.25
    assert stats["median_duration_s"] == pytest.approx(np.median([0, 30, 10, 100]))
    assert stats["p90_duration_s"] == pytest.approx(np.quantile([0, 30, 10, 100], 0.9))
    assert stats["sessions_per_user_median"] == 2.0  # a: 3, b: 1
    assert job_stats([orjson.dumps([])]) == {
        "engaged_sessions": 0,
        "bounce_rate": None,
        "median_duration_s": None,
        "p90_duration_s": None,
        "sessions_per_user_median": None,
    }


@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_quantile_is_numpys_linear(n: int) -> None:
    values = sorted(np.random.default_rng(n).random(n).tolist())
    for q in (0.0, 0.5, 0.9, 1.0):
        assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


@pytest.mark.parametrize("width", [7, 50_000_000])
def test_distinct_screens_by_bitmap_or_by_sorting_agree_with_sets(width: int) -> None:
    """Few screens take the bitmap; a huge code space (sparse codes) the sorted pairs."""
    from worker.core.sessions import _distinct_per_session

    rng = np.random.default_rng(width)
    session = np.sort(rng.integers(0, 300, 5000))
    codes = rng.integers(0, width, 5000)
    got = _distinct_per_session(session, codes, 300)
    assert got.tolist() == [len(set(codes[session == s].tolist())) for s in range(300)]
