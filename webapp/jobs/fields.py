"""The marshmallow fields the jobs resource reads its input with: strict JSON types, Unicode
text, and ISO-8601 date-times within the range a job may name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import fields


def to_utc_iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


# The dates a job may name: the events are epoch milliseconds, and a job reads up to two years
# beyond its range (max_span_s + split_idle_s), which must stay within what datetime represents.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class Text(fields.String):
    """A string that is valid Unicode: JSON's ``"\\ud800"`` (a lone surrogate) decodes to a str
    no UTF-8 encoder accepts, which would fail later, far from the field that held it."""

    default_error_messages = {"surrogate": "Not valid Unicode text (a lone surrogate escape such as \\ud800)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise self.make_error("surrogate") from exc
        return text


class IsoDateTime(fields.Field):
    """ISO-8601 date-time, with or without an offset (none means UTC), e.g. ``2022-09-22 11:00Z``,
    from ``EARLIEST`` to ``LATEST``."""

    default_error_messages = {
        "invalid": "Not a valid ISO-8601 date-time (e.g. 2022-09-22T11:00:00+02:00).",
        "range": f"Out of range: dates from {to_utc_iso(EARLIEST)} to {to_utc_iso(LATEST)} are accepted.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise self.make_error("invalid") from exc
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        try:  # year 1 at +01:00 is before year 1 in UTC: not representable
            in_utc = parsed.astimezone(UTC)
        except OverflowError as exc:
            raise self.make_error("range") from exc
        if not EARLIEST <= in_utc <= LATEST:
            raise self.make_error("range")
        return in_utc

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return to_utc_iso(value) if isinstance(value, datetime) else str(value)


class StrictBoolean(fields.Boolean):
    """``true`` or ``false`` only: not 1, "true" or "yes", as the OpenAPI document says boolean."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictInteger(fields.Integer):
    """A JSON integer only: not 5.0, "5" or true (a bool is an int in Python)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | None:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictNumber(fields.Float):
    """A JSON number only: not "1800" or true; finite (no NaN, Infinity or 1e400)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)
