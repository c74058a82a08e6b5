"""The document rules: the fast path always agrees with the marshmallow schema."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.sources.accumulator import EventAccumulator
from worker.sources.documents import FieldNames, event_schema
from worker.sources.timestamps import timestamp_ms

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**16), max_value=10**16),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["2022-09-22T11:00:00Z", "2022-09-22 11:00+02:00", "2022-09-22", "01", "", "22/09/2022"]),
    st.lists(st.integers(), max_size=2),
)
documents = st.dictionaries(st.sampled_from(["@timestamp", "util", "ecran", "instance", "other"]), values, max_size=5)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_fast_path_and_schema_agree(doc: dict[str, Any]) -> None:
    acc = EventAccumulator()
    acc.add_many([doc])
    schema_ok = not event_schema().validate(doc)
    assert acc.invalid == (0 if schema_ok else 1)
    if schema_ok:
        user = acc.user_names[0]
        ev = acc.pop_user(user)
        assert ev.t_ms.tolist() == [event_schema().load(doc)["timestamp"]]


def test_strings_stay_strings_and_numbers_are_refused() -> None:
    acc = EventAccumulator()
    acc.add_many(
        [
            {"@timestamp": 1663849892657, "util": "romain", "ecran": "01", "instance": "instance589"},
            {"@timestamp": 1663849892658, "util": "romain", "ecran": 1, "instance": "instance589"},
        ]
    )
    screens, instances = acc.vocabulary()
    ev = acc.pop_user("romain")
    assert screens[int(ev.screen[0])] == "01" and len(ev) == 1
    assert acc.invalid == 1 and "ecran" in acc.error_samples[0]


def test_timestamps_iso_with_or_without_offset_and_epoch_ms() -> None:
    assert timestamp_ms("2022-09-22T11:00:00Z") == 1663844400000
    assert timestamp_ms("2022-09-22 13:00+02:00") == 1663844400000
    assert timestamp_ms("2022-09-22T11:00:00") == 1663844400000  # no offset: UTC
    assert timestamp_ms(1663844400000) == 1663844400000
    assert timestamp_ms("2022-09-28 / 12:00+02:00") is None
    assert timestamp_ms(True) is None and timestamp_ms(None) is None


def test_users_and_range_filter_without_judging_other_users() -> None:
    acc = EventAccumulator(users=["a"], lo_ms=1000, hi_ms=2000)
    acc.add_many(
        [
            {"@timestamp": 999, "util": "a", "ecran": "s", "instance": "i"},
            {"@timestamp": 1000, "util": "a", "ecran": "s", "instance": "i"},
            {"@timestamp": 2000, "util": "a", "ecran": "s", "instance": "i"},
            {"@timestamp": 2001, "util": "a", "ecran": "s", "instance": "i"},
            {"@timestamp": 1500, "util": "b", "ecran": 5, "instance": "i"},  # not ours: not counted
            {"@timestamp": "bad", "util": "a", "ecran": "s", "instance": "i"},  # ours: counted
        ]
    )
    assert acc.scanned == 6 and acc.invalid == 1
    assert acc.pop_user("a").t_ms.tolist() == [1000, 2000]


def test_events_come_back_sorted_in_compact_arrays() -> None:
    acc = EventAccumulator(FieldNames("ts", "who", "what", "where"))
    acc.add_many({"ts": t, "who": "u", "what": f"s{t}", "where": "x"} for t in [30, 10, 20, 10])
    ev = acc.pop_user("u")
    assert ev.t_ms.dtype == np.int64 and ev.screen.dtype == np.int32
    assert ev.t_ms.tolist() == [10, 10, 20, 30]
    screens, _ = acc.vocabulary()
    assert [screens[c] for c in ev.screen] == ["s10", "s10", "s20", "s30"]
    assert acc.user_names == []  # handed over, not kept twice


iso_like = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, tz: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{tz}",
    st.integers(1, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["T", " ", "t", "/"]),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["", ".5", ".123", ",123", ".123456", ".1234567", "."]),
    st.sampled_from(["", "Z", "z", "+02:00", "-05:30", "+0200", "+02", "+24:00", "+00:00:30", "+02:00:00.5", " "]),
)


@settings(max_examples=600, deadline=None)
@given(st.one_of(iso_like, st.text(max_size=30)))
def test_fast_iso_parser_equals_fromisoformat(text: str) -> None:
    from worker.sources.timestamps import iso_ms_reference

    assert timestamp_ms(text) == iso_ms_reference(text)


clean_docs = st.builds(
    lambda t, u, s, i, iso: {"@timestamp": (timestamp_to_iso(t) if iso else t), "util": u, "ecran": s, "instance": i},
    st.integers(1_600_000_000_000, 1_700_000_000_000),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["s1", "s2", "01"]),
    st.sampled_from(["i1", "i2"]),
    st.booleans(),
)


def timestamp_to_iso(ms: int) -> str:
    from datetime import datetime, timedelta, timezone

    offset = timezone(timedelta(hours=(ms % 5) - 2))
    return datetime.fromtimestamp(ms / 1000, offset).isoformat(timespec="milliseconds")


def read_both(batch: list, users: list[str] | None, lo: int | None, hi: int | None) -> list[tuple]:
    out = []
    for how in ("add_many", "add_each"):
        acc = EventAccumulator(users=users, lo_ms=lo, hi_ms=hi)
        getattr(acc, how)(batch)
        per_user = {u: acc.pop_user(u) for u in acc.user_names}
        out.append(
            (
                acc.scanned,
                acc.invalid,
                acc.vocabulary(),
                {u: (e.t_ms.tolist(), e.screen.tolist(), e.instance.tolist()) for u, e in per_user.items()},
            )
        )
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(clean_docs, clean_docs, clean_docs, documents), max_size=40),
    st.sampled_from([None, ["a"], ["a", "b"]]),
    st.sampled_from([(None, None), (1_620_000_000_000, 1_680_000_000_000)]),
)
def test_the_column_path_equals_the_document_path(batch: list, users: list[str] | None, bounds: tuple) -> None:
    fast, slow = read_both(batch, users, *bounds)
    assert fast == slow


def test_a_clean_page_takes_the_column_path() -> None:
    page = [
        {"@timestamp": timestamp_to_iso(1663844400000 + 1000 * k), "util": "a", "ecran": "s", "instance": "i"}
        for k in range(100)
    ]
    acc = EventAccumulator(users=["a"])
    assert acc._add_batch(page) is True
    assert acc.pop_user("a").t_ms.tolist() == [1663844400000 + 1000 * k for k in range(100)]
    assert (
        EventAccumulator(users=["a"])._add_batch(
            page + [{"@timestamp": "bad", "util": "a", "ecran": "s", "instance": "i"}]
        )
        is False
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(iso_like, iso_like, st.text(max_size=25)), min_size=1, max_size=12))
def test_array_iso_parser_equals_fromisoformat(texts: list[str]) -> None:
    from worker.sources.timestamps import iso_ms_many, iso_ms_reference

    expected = [iso_ms_reference(t) for t in texts]
    got = iso_ms_many(texts)
    if None in expected:
        assert got is None
    else:
        assert got is not None and got.tolist() == expected


def test_array_iso_parser_on_calendar_edges() -> None:
    from worker.sources.timestamps import iso_ms_many, iso_ms_reference

    texts = [
        "2024-02-29T23:59:59.999Z",
        "2000-02-29 00:00:00+14:00",
        "1900-03-01T00:00:00-12:00",
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59.999",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.9995Z",
    ]
    assert iso_ms_many(texts).tolist() == [iso_ms_reference(t) for t in texts]
    assert iso_ms_many(["2023-02-29T00:00:00Z"]) is None and iso_ms_many(["1900-02-29T00:00:00Z"]) is None
