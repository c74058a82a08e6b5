"""Event timestamps: an ISO-8601 string (no offset = UTC) or epoch milliseconds, read as epoch ms.

:func:`iso_ms_reference` is the rule (``datetime.fromisoformat``); :func:`timestamp_ms` and
:func:`iso_ms_many` give the same answers at a fraction of the cost, one value at a time
(caching the parts of a timestamp) or a whole batch with array arithmetic
(``tests/test_documents.py`` checks that they always agree).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Beyond these, epoch milliseconds are certainly not a usage event (and overflow datetime).
MIN_MS = -62_135_596_800_000  # 0001-01-01
MAX_MS = 253_402_300_799_999  # 9999-12-31


def iso_ms_reference(value: str) -> int | None:
    """Epoch ms of an ISO-8601 string, the plain way (``datetime.fromisoformat``; no offset = UTC)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# what a tail cache gives for a tail never seen: no parsed tail is this very object
_UNSEEN: tuple[int, int] | None = (-1, -1)


class _IsoParser:
    """``iso_ms_reference`` at a fraction of the cost, for the common ``YYYY-MM-DD?HH:MM:SS...`` shape.

    Parsing ISO strings was most of a scan's client time. A timestamp splits into a date (a few
    hundred distinct values per year), a time of day (86,400) and a tail (fraction and offset: a
    thousand or so at millisecond precision), each parsed once by the reference and then found
    in a dict, so every rule of ``datetime.fromisoformat`` still applies. The caches are bounded;
    past their size an unseen part is parsed without being kept.
    """

    MAX_ENTRIES = 200_000

    def __init__(self) -> None:
        self.dates: dict[str, int | None] = {}
        self.times: dict[str, int | None] = {}
        self.tails: dict[str, tuple[int, int] | None] = {}

    def _date(self, text: str) -> int | None:
        ms = iso_ms_reference(text + "T00:00:00+00:00") if len(text) == 10 else None
        if len(self.dates) < self.MAX_ENTRIES:
            self.dates[text] = ms
        return ms

    def _time(self, text: str) -> int | None:
        ms = iso_ms_reference("1970-01-01T" + text + "+00:00")
        if len(self.times) < self.MAX_ENTRIES:
            self.times[text] = ms
        return ms

    def _tail(self, text: str) -> tuple[int, int] | None:
        # (fraction in ms, offset in ms): the reference on a fixed date and time gives both
        try:
            parsed = datetime.fromisoformat("1970-01-01T00:00:00" + text)
        except ValueError:
            parsed = None
        if parsed is None:
            value = None
        else:
            offset = parsed.utcoffset()
            off_ms = (
                0 if offset is None else (offset.days * 86_400 + offset.seconds) * 1000 + offset.microseconds // 1000
            )
            value = (parsed.microsecond // 1000, off_ms)
        if len(self.tails) < self.MAX_ENTRIES:
            self.tails[text] = value
        return value

    def __call__(self, value: str) -> int | None:
        if len(value) < 19 or value[10] not in "T ":
            return iso_ms_reference(value)
        date_key, time_key, tail_key = value[:10], value[11:19], value[19:]
        day = self.dates.get(date_key, -1)
        if day == -1:
            day = self._date(date_key)
        sod = self.times.get(time_key, -1)
        if sod == -1:
            sod = self._time(time_key)
        tail = self.tails.get(tail_key, _UNSEEN)
        if tail is _UNSEEN:
            tail = self._tail(tail_key)
        if day is None or sod is None or tail is None:
            # a part the fast path cannot judge alone (e.g. 24:00:00): the reference decides
            return iso_ms_reference(value)
        return day + sod + tail[0] - tail[1]


_iso_ms = _IsoParser()

_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def iso_ms_many(values: list[str]) -> np.ndarray | None:
    """Epoch ms of many ISO-8601 strings at once; ``None`` if any of them is not a timestamp.

    The ``YYYY-MM-DD?HH:MM:SS`` head of every string is checked and converted with array
    arithmetic (proleptic Gregorian days, as ``datetime``); the tail (fraction, offset) goes
    through the parser's cache. A string the array path cannot vouch for is handed to
    :func:`timestamp_ms`, so the result is always that of ``datetime.fromisoformat``.
    """
    n = len(values)
    arr = np.array(values)
    width = arr.dtype.itemsize // 4
    if n == 0 or arr.dtype.kind != "U" or width < 19:
        out = [timestamp_ms(v) for v in values]
        return None if None in out else np.array(out, dtype=np.int64)
    chars = arr.view(np.uint32).reshape(n, width)  # code points, no copy
    d = chars[:, _DIGITS].astype(np.int64) - 48  # only the 14 digit columns are copied
    ok = ((d >= 0) & (d <= 9)).all(axis=1)
    ok &= (chars[:, 4] == 45) & (chars[:, 7] == 45) & (chars[:, 13] == 58) & (chars[:, 16] == 58)
    ok &= (chars[:, 10] == 84) | (chars[:, 10] == 32)  # "T" or " "
    y = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    mo, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    h, mi, sec = d[:, 8] * 10 + d[:, 9], d[:, 10] * 10 + d[:, 11], d[:, 12] * 10 + d[:, 13]
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    mo_c = np.clip(mo, 0, 12)
    ok &= (y >= 1) & (mo >= 1) & (mo <= 12) & (day >= 1) & (day <= _DAYS_IN_MONTH[mo_c] + (leap & (mo_c == 2)))
    ok &= (h <= 23) & (mi <= 59) & (sec <= 59)
    # tails repeat (a page holds a few hundred distinct ones): judge each distinct tail once
    tail_of = [v[19:] for v in values]
    known = _iso_ms.tails
    table: dict[str, tuple[int, int] | None] = {}
    for tail in set(tail_of):
        part = known.get(tail, _UNSEEN)
        table[tail] = _iso_ms._tail(tail) if part is _UNSEEN else part
    position = {tail: k for k, tail in enumerate(table)}
    which = np.array([position[tail] for tail in tail_of], dtype=np.int64)
    parts = [(0, 0) if part is None else part for part in table.values()]
    frac = np.array([part[0] for part in parts], dtype=np.int64)[which]
    off = np.array([part[1] for part in parts], dtype=np.int64)[which]
    bad_tails = [position[tail] for tail, part in table.items() if part is None]
    if bad_tails:
        ok &= ~np.isin(which, bad_tails)
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    yy = y - (mo <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (mo + np.where(mo > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    ms = days * 86_400_000 + (h * 3600 + mi * 60 + sec) * 1000 + frac - off
    for i in np.flatnonzero(~ok).tolist():
        value = timestamp_ms(values[i])
        if value is None:
            return None
        ms[i] = value
    return ms


def timestamp_ms(value: Any) -> int | None:
    """Epoch milliseconds of an ISO-8601 string or an epoch-ms number; ``None`` if neither."""
    kind = type(value)
    if kind is int:
        return value if MIN_MS <= value <= MAX_MS else None
    if kind is str:
        return _iso_ms(value)
    if kind is float and math.isfinite(value) and MIN_MS <= value <= MAX_MS:
        return int(value)
    return None
