"""Date and time-value parsing as ES does it (strict_date_optional_time||epoch_millis, keep_alive)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .errors import _bad_request

_MISSING_DATE = np.iinfo(np.int64).min
_SORT_MISSING = np.iinfo(np.int64).max  # what ES reports for a missing value sorted ascending
_MAX_KEEP_ALIVE_S = 24 * 3600
_SHARD_DOC_BASE = 1 << 32  # _shard_doc = (shard index << 32) | doc; we are "shard 1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO = re.compile(
    r"^(?P<y>[+-]?\d{4,9})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?)?)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_DIGITS = re.compile(r"-?\d+")


def parse_date(value: Any, *, round_up: bool = False) -> int | None:
    """Epoch ms of a ``strict_date_optional_time||epoch_millis`` value; None if unparsable.

    ``round_up`` fills missing components with their maximum, as ES does for ``lte``/``gt``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 1e17 else None
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if _DIGITS.fullmatch(text) and (len(text) > 4 or text.startswith("-")):
        return int(text)  # epoch_millis (a 4-digit string is a year, as in ES)
    m = _ISO.match(text)
    if not m:
        return None
    try:
        y, mo, d = int(m["y"]), int(m["mo"] or 1), int(m["d"] or 1)
        h, mi, s = int(m["h"] or 0), int(m["mi"] or 0), int(m["s"] or 0)
        frac = m["f"] or ""
        ms = int((frac + "000")[:3]) if frac else 0
        dt = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    except ValueError:
        return None
    tz = m["tz"]
    offset_s = 0
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        hh, mm = int(digits[:2]), int(digits[2:4] or 0)
        if hh > 18 or mm > 59:
            return None
        offset_s = sign * (hh * 3600 + mm * 60)
    delta = dt - _EPOCH
    out = (delta.days * 86400 + delta.seconds - offset_s) * 1000 + ms
    if round_up:
        if m["mo"] is None:
            out = _round_up_months(y, 12, offset_s)
        elif m["d"] is None:
            out = _round_up_months(y, mo, offset_s)
        elif m["h"] is None:
            out += 86_400_000 - 1
        elif m["mi"] is None:
            out += 3_600_000 - 1
        elif m["s"] is None:
            out += 60_000 - 1
        elif not frac:
            out += 999
    return out


def _round_up_months(year: int, month: int, offset_s: int) -> int:
    nxt = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    delta = nxt - _EPOCH
    return (delta.days * 86400 + delta.seconds - offset_s) * 1000 - 1


_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "micros": 1e-6, "nanos": 1e-9}


def parse_time_value(text: str, what: str = "keep_alive") -> float:
    m = re.fullmatch(r"(\d+)(d|h|m|s|ms|micros|nanos)", str(text).strip())
    if not m:
        raise _bad_request(
            f"failed to parse setting [{what}] with value [{text}] as a time value: unit is missing or unrecognized",
            "parse_exception",
        )
    return int(m[1]) * _UNITS[m[2]]
