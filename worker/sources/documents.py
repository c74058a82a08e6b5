"""Usage-event documents: their schema, and the compact per-user arrays they are read into.

Every document read from a source goes through the rules of :class:`EventSchema` (marshmallow):
the user, screen and instance are strings (``"01"`` stays the string ``"01"``; a number is
refused, never coerced), and the timestamp is an ISO-8601 string (no offset = UTC) or epoch
milliseconds. A document that breaks a rule is counted as invalid and skipped.

Running marshmallow on millions of documents would cost more than the whole rest of a job, so
:class:`EventAccumulator` applies the same rules in a tight loop and only hands the documents it
refuses to the schema, to confirm them and keep a readable reason (``tests/test_documents.py``
checks that both always agree). Accepted events go straight into typed arrays: 16 bytes per
event instead of a Python list per document.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import numpy as np
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Beyond these, epoch milliseconds are certainly not a usage event (and overflow datetime).
_MIN_MS = -62_135_596_800_000  # 0001-01-01
_MAX_MS = 253_402_300_799_999  # 9999-12-31


@dataclass(frozen=True)
class FieldNames:
    """Where each part of an event lives in a source document."""

    timestamp: str = "@timestamp"
    user: str = "util"
    screen: str = "ecran"
    instance: str = "instance"

    @property
    def source_fields(self) -> list[str]:
        return [self.timestamp, self.user, self.screen, self.instance]


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
            off_ms = 0 if offset is None else (offset.days * 86_400 + offset.seconds) * 1000 + offset.microseconds // 1000
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
        tail = self.tails.get(tail_key, -1)
        if tail == -1:
            tail = self._tail(tail_key)
        if day is None or sod is None or tail is None:
            # a part the fast path cannot judge alone (e.g. 24:00:00): the reference decides
            return iso_ms_reference(value)
        return day + sod + tail[0] - tail[1]


_iso_ms = _IsoParser()


def timestamp_ms(value: Any) -> int | None:
    """Epoch milliseconds of an ISO-8601 string or an epoch-ms number; ``None`` if neither."""
    kind = type(value)
    if kind is int:
        return value if _MIN_MS <= value <= _MAX_MS else None
    if kind is str:
        return _iso_ms(value)
    if kind is float and math.isfinite(value) and _MIN_MS <= value <= _MAX_MS:
        return int(value)
    return None


class TimestampField(fields.Field):
    """An ISO-8601 string (no offset = UTC) or epoch milliseconds, deserialised to epoch ms."""

    default_error_messages = {
        "invalid": "Not an ISO-8601 timestamp or epoch milliseconds.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> int:
        parsed = timestamp_ms(value)
        if parsed is None:
            raise self.make_error("invalid")
        return parsed


def event_schema(names: FieldNames = FieldNames()) -> Schema:
    """The marshmallow schema of one event document under the given field names."""
    return _event_schema(names)


@lru_cache(maxsize=16)
def _event_schema(names: FieldNames) -> Schema:
    strict = {"required": True, "validate": validate.Length(min=1)}
    schema_cls = Schema.from_dict(
        {
            "timestamp": TimestampField(required=True, data_key=names.timestamp),
            "user": fields.String(data_key=names.user, **strict),
            "screen": fields.String(data_key=names.screen, **strict),
            "instance": fields.String(data_key=names.instance, **strict),
        },
        name="EventSchema",
    )
    return schema_cls(unknown=EXCLUDE)


EventSchema = _event_schema(FieldNames()).__class__


@dataclass
class UserEvents:
    """One user's events, sorted by time. Codes index into the accumulator's vocabularies."""

    user: str
    t_ms: np.ndarray  # int64, shape (n,)
    screen: np.ndarray  # int32 codes, shape (n,)
    instance: np.ndarray  # int32 codes, shape (n,)

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])


class _Columns:
    __slots__ = ("t", "screen", "instance")

    def __init__(self) -> None:
        self.t = array("q")
        self.screen = array("i")
        self.instance = array("i")


class EventAccumulator:
    """Reads event documents into compact per-user arrays, counting and skipping bad ones.

    Only documents of the wanted ``users`` (all when ``None``) with ``lo_ms <= t <= hi_ms`` are
    kept. Documents of other users are counted in ``scanned`` but neither kept nor judged (a
    file holds everyone's events; Elasticsearch's ``terms`` filter would not return them).
    """

    MAX_ERROR_SAMPLES = 5

    def __init__(
        self,
        names: FieldNames = FieldNames(),
        users: Iterable[str] | None = None,
        lo_ms: int | None = None,
        hi_ms: int | None = None,
    ) -> None:
        self.names = names
        self.users = None if users is None else frozenset(users)
        self.lo_ms = _MIN_MS if lo_ms is None else lo_ms
        self.hi_ms = _MAX_MS if hi_ms is None else hi_ms
        self.scanned = 0
        self.invalid = 0
        self.error_samples: list[dict[str, Any]] = []
        self.screens: dict[str, int] = {}
        self.instances: dict[str, int] = {}
        self._columns: dict[str, _Columns] = {}

    def add_many(self, documents: Iterable[Mapping[str, Any]]) -> None:
        """Read documents (the ``_source`` of hits, or lines of a file)."""
        ts_key, user_key, screen_key, inst_key = self.names.source_fields
        users, lo, hi = self.users, self.lo_ms, self.hi_ms
        columns, screens, instances = self._columns, self.screens, self.instances
        str_, int_, to_ms = str, int, timestamp_ms
        scanned = 0
        for doc in documents:
            scanned += 1
            try:
                user = doc[user_key]
            except (KeyError, TypeError):
                user = None
            # A document whose user is not one of ours is not ours to judge: a `terms` query
            # would not have returned it either.
            if users is not None and (type(user) is not str_ or user not in users):
                continue
            try:
                screen = doc[screen_key]
                inst = doc[inst_key]
                raw_t = doc[ts_key]
            except (KeyError, TypeError):
                self._reject(doc)
                continue
            if type(user) is not str_ or type(screen) is not str_ or type(inst) is not str_:
                self._reject(doc)
                continue
            t = raw_t if type(raw_t) is int_ and lo <= raw_t <= hi else to_ms(raw_t)
            if t is None or not user or not screen or not inst:
                self._reject(doc)
                continue
            if t < lo or t > hi:
                continue
            col = columns.get(user)
            if col is None:
                col = columns[user] = _Columns()
            col.t.append(t)
            code = screens.get(screen)
            if code is None:
                code = screens[screen] = len(screens)
            col.screen.append(code)
            code = instances.get(inst)
            if code is None:
                code = instances[inst] = len(instances)
            col.instance.append(code)
        self.scanned += scanned

    def _reject(self, doc: Any) -> None:
        """Confirm a refusal with the schema (the reference), count it, keep a sample reason."""
        if isinstance(doc, Mapping):
            errors = event_schema(self.names).validate(doc)
        else:
            errors = {"_schema": ["Not a JSON object."]}
        if not errors:  # the fast path and the schema disagree: the schema wins
            raise AssertionError(f"fast path refused a valid document: {doc!r}")
        self.invalid += 1
        if len(self.error_samples) < self.MAX_ERROR_SAMPLES:
            self.error_samples.append(errors)

    @property
    def user_names(self) -> list[str]:
        return sorted(self._columns)

    def pop_user(self, user: str) -> UserEvents:
        """Hand over one user's events, sorted by time (stable), and forget them here."""
        col = self._columns.pop(user, None) or _Columns()
        t = np.frombuffer(col.t, dtype=np.int64) if len(col.t) else np.empty(0, np.int64)
        screen = np.frombuffer(col.screen, dtype=np.int32) if len(col.screen) else np.empty(0, np.int32)
        inst = np.frombuffer(col.instance, dtype=np.int32) if len(col.instance) else np.empty(0, np.int32)
        if t.shape[0] > 1 and np.any(t[1:] < t[:-1]):
            order = np.argsort(t, kind="stable")
            t, screen, inst = t[order], screen[order], inst[order]
        return UserEvents(user=user, t_ms=t, screen=screen, instance=inst)

    def vocabulary(self) -> tuple[list[str], list[str]]:
        """Screen and instance names, indexed by code."""
        return list(self.screens), list(self.instances)


def validate_document(doc: Mapping[str, Any], names: FieldNames = FieldNames()) -> dict[str, Any]:
    """Deserialize one document with the schema; raises ``marshmallow.ValidationError``."""
    return event_schema(names).load(doc)


__all__ = [
    "EventAccumulator",
    "EventSchema",
    "FieldNames",
    "UserEvents",
    "ValidationError",
    "event_schema",
    "timestamp_ms",
    "validate_document",
]
