"""Public API of worker.core: edge cases, gap method, summaries, truncation flags."""

import numpy as np
import pytest

from worker.core import (
    SessionTable,
    label_sessions,
    method_params,
    read_margin_ms,
    select_overlapping,
    summarize_sessions,
)

MIN = 60_000


@pytest.mark.parametrize("method", ["gap", "hdbscan"])
@pytest.mark.parametrize("n", [0, 1, 2, 4])
def test_small_inputs_do_not_crash(method, n):
    t = np.arange(n, dtype=np.int64) * 1000
    labels = label_sessions(t, method)
    assert labels.dtype == np.int64 and labels.shape == (n,)
    if method == "hdbscan":
        assert np.all(labels == -1)


def test_gap_method_splits_after_more_than_max_gap():
    t = np.array([0, 10, 10 + 30 * MIN, 20 + 60 * MIN + 1, 20 + 60 * MIN + 1], dtype=np.int64)
    labels = label_sessions(t, "gap", {"max_gap_s": 1800})
    # 30 min exactly does not split; 30 min + 1 ms does.
    assert labels.tolist() == [0, 0, 0, 1, 1]


@pytest.mark.parametrize(
    "method,params",
    [
        ("nope", None),
        ("gap", {"max_gap_s": 0}),
        ("gap", {"max_gap_s": "x"}),
        ("gap", {"min_cluster_size": 5}),
        ("hdbscan", {"min_cluster_size": 1}),
        ("hdbscan", {"min_cluster_size": 2.5}),
        ("hdbscan", {"min_samples": 0}),
        ("hdbscan", {"cluster_selection_epsilon_s": -1}),
        ("hdbscan", {"split_idle_s": 0}),
        ("hdbscan", {"allow_single_cluster": "yes"}),
    ],
)
def test_bad_method_or_params_raise_value_error(method, params):
    with pytest.raises(ValueError):
        label_sessions(np.arange(3, dtype=np.int64), method, params)


def test_method_params_resolves_min_samples_like_hdbscan():
    assert method_params("hdbscan", {"min_cluster_size": 7})["min_samples"] == 7
    assert method_params("hdbscan", {"min_cluster_size": 7, "min_samples": 2})["min_samples"] == 2


def test_unsorted_timestamps_are_rejected():
    with pytest.raises(ValueError, match="sorted"):
        label_sessions(np.array([5, 1], dtype=np.int64), "gap")


def test_summary_fields_and_truncation_flags():
    t = np.array([0, 1, 2, 3, 10 * MIN, 10 * MIN + 5, 100 * MIN], dtype=np.int64)
    screen = np.array([7, 1, 1, 2, 3, 4, 5], dtype=np.int32)
    inst = np.array([9, 8, 8, 9, 1, 1, 2], dtype=np.int32)
    params = {"max_gap_s": 1800}
    labels = label_sessions(t, "gap", params)
    table = summarize_sessions(
        t, labels, screen, inst, read_start_ms=-5 * MIN, read_end_ms=200 * MIN, method="gap", params=params
    )
    assert isinstance(table, SessionTable)
    assert table.start_ms.tolist() == [0, 100 * MIN]
    assert table.end_ms.tolist() == [10 * MIN + 5, 100 * MIN]
    assert table.events.tolist() == [6, 1]
    assert table.instance.tolist() == [9, 2]  # 9, 8 and 1 twice each: 9 is seen first
    assert table.entry_screen.tolist() == [7, 5]
    assert table.exit_screen.tolist() == [4, 5]
    assert table.truncated_start.tolist() == [True, False]  # 5 min after the read edge
    assert table.truncated_end.tolist() == [False, False]  # 100 min before it
    assert select_overlapping(table, 50 * MIN, 150 * MIN).tolist() == [False, True]
    assert select_overlapping(table, 10 * MIN + 5, 10 * MIN + 5).tolist() == [True, False]


def test_read_margin_covers_span_and_idle_gap():
    params = {"max_gap_s": 600, "max_span_s": 3600}
    assert read_margin_ms("gap", params) == (3600 + 600) * 1000 + 1


def test_units_are_sized_by_work() -> None:
    from worker.jobs import UNIT_EVENTS, UNKNOWN_UNITS, plan_units

    users = [f"u{i:05d}" for i in range(10_000)]
    unknown = plan_units(users, None)
    assert len(unknown) == UNKNOWN_UNITS and [u for unit in unknown for u in unit] == users
    counts = {u: 50 for u in users} | {"u00007": 3 * UNIT_EVENTS, "u00008": 1}
    units = plan_units(users, counts)
    assert [u for unit in units for u in unit] == users  # user order kept: results are read in unit order
    assert ["u00007"] in units  # a heavy user alone
    loads = [sum(counts[u] for u in unit) for unit in units if unit != ["u00007"]]
    assert max(loads) <= UNIT_EVENTS and len(units) <= 2 + 10_000 * 50 // UNIT_EVENTS + 1
    assert plan_units(["a", "b"], {"a": 0, "b": 0}) == [["a", "b"]]  # users without events cost nothing
