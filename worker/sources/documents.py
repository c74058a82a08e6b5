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

import gc
import math
import threading
from array import array
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy as np
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from sessionizer.settings import SourceSettings

UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Beyond these, epoch milliseconds are certainly not a usage event (and overflow datetime).
_MIN_MS = -62_135_596_800_000  # 0001-01-01
_MAX_MS = 253_402_300_799_999  # 9999-12-31


class GcPause:
    """Pause the cyclic garbage collector while one batch of documents is decoded and accumulated.

    Decoding a 10,000-hit page allocates ~100,000 dicts, lists and strings. Every 700 container
    allocations trigger a collection, and the older generations' collections walk every live
    container of the process: measured here, ``orjson.loads`` of such a page costs 2.2 µs per hit
    with the collector running and 0.58 µs with it paused. A page holds no reference cycles (it
    is freed by reference counting when the next one replaces it), so nothing leaks; the pause is
    one page long and re-entrant across slice threads (the collector comes back when the last
    thread leaves, and only if it was enabled before).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._was_enabled:
                    gc.enable()


gc_paused = GcPause()


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

    @classmethod
    def from_settings(cls, source: SourceSettings) -> FieldNames:
        """The names configured by ``FIELD_TIMESTAMP``, ``FIELD_USER``, ``FIELD_SCREEN``, ``FIELD_INSTANCE``."""
        return cls(source.timestamp_field, source.user_field, source.screen_field, source.instance_field)


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
        tail = self.tails.get(tail_key, -1)
        if tail == -1:
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
    table = {}
    for tail in set(tail_of):
        part = known.get(tail, -1)
        table[tail] = _iso_ms._tail(tail) if part == -1 else part
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
        # user -> (timestamp in ms or None, reasons) of each of the user's refused documents
        self.rejected: dict[str, list[tuple[int | None, dict[str, Any]]]] = {}
        # documents taken from the source itself by this read (the rest came from the event
        # store); None: all of ``scanned``
        self.from_source: int | None = None
        self.screens: dict[str, int] = {}
        self.instances: dict[str, int] = {}
        self._columns: dict[str, _Columns] = {}

    def add_many(self, documents: Iterable[Mapping[str, Any]]) -> None:
        """Read documents (the ``_source`` of hits, or lines of a file).

        A batch whose documents of our users are all valid (the usual case) is read column by
        column with array operations; any other batch goes document by document through
        :meth:`add_each`, which judges, counts and skips. Both give the same arrays, codes and
        counts (``tests/test_documents.py``).
        """
        docs = documents if type(documents) is list else list(documents)
        if not self._add_batch(docs):
            self.add_each(docs)

    def _add_batch(self, docs: list[Any]) -> bool:
        """The column-wise path; False (having changed nothing) when the batch needs judging."""
        ts_key, user_key, screen_key, inst_key = self.names.source_fields
        try:
            users = list(map(itemgetter(user_key), docs))
            distinct_users = set(users)  # TypeError for an unhashable value: judged one by one
            if {type(u) for u in distinct_users} != {str}:
                return False
            wanted = self.users
            if wanted is not None and not distinct_users <= wanted:
                keep = [i for i, u in enumerate(users) if u in wanted]
                mine = [docs[i] for i in keep]
                users = [users[i] for i in keep]
                distinct_users &= wanted
            else:
                mine = docs
            if not mine:
                self.scanned += len(docs)
                return True
            screens = list(map(itemgetter(screen_key), mine))
            insts = list(map(itemgetter(inst_key), mine))
            raw_t = list(map(itemgetter(ts_key), mine))
            for distinct in (distinct_users, set(screens), set(insts)):
                if "" in distinct or {type(v) for v in distinct} != {str}:
                    return False
        except (KeyError, TypeError, AttributeError):
            return False
        kinds = set(map(type, raw_t))
        if kinds == {int}:
            try:
                t = np.array(raw_t, dtype=np.int64)
            except OverflowError:
                return False
            if t.min() < _MIN_MS or t.max() > _MAX_MS:
                return False
        elif kinds == {str}:
            t = iso_ms_many(raw_t)
            if t is None:
                return False
        else:
            return False
        self.scanned += len(docs)
        inside = np.flatnonzero((t >= self.lo_ms) & (t <= self.hi_ms))
        if inside.shape[0] == 0:
            return True
        if inside.shape[0] != len(mine):
            distinct_users = set()  # recounted below from the events kept
            picks = inside.tolist()
            users = [users[i] for i in picks]
            screens = [screens[i] for i in picks]
            insts = [insts[i] for i in picks]
            t = t[inside]
        screen_codes = self._codes(self.screens, screens)
        inst_codes = self._codes(self.instances, insts)
        if len(distinct_users) == 1:
            self._append(next(iter(distinct_users)), t, screen_codes, inst_codes)
            return True
        # many users in one batch (a file's lines, a page of several users): group the rows by
        # user with one stable sort, so each user's rows keep their order
        first_seen = dict.fromkeys(users)
        first_seen = {u: k for k, u in enumerate(first_seen)}
        user_codes = np.fromiter(map(first_seen.__getitem__, users), dtype=np.int64, count=len(users))
        order = np.argsort(user_codes, kind="stable")
        bounds = np.searchsorted(user_codes[order], np.arange(len(first_seen) + 1))
        t, screen_codes, inst_codes = t[order], screen_codes[order], inst_codes[order]
        for user, k in first_seen.items():
            a, b = bounds[k], bounds[k + 1]
            self._append(user, t[a:b], screen_codes[a:b], inst_codes[a:b])
        return True

    def _append(self, user: str, t: np.ndarray, screen_codes: np.ndarray, inst_codes: np.ndarray) -> None:
        col = self._columns.get(user)
        if col is None:
            col = self._columns[user] = _Columns()
        col.t.frombytes(t.astype(np.int64).tobytes())
        col.screen.frombytes(screen_codes.astype(np.int32).tobytes())
        col.instance.frombytes(inst_codes.astype(np.int32).tobytes())

    def add_columns(
        self,
        user: str,
        t: np.ndarray,
        screen: np.ndarray,
        instance: np.ndarray,
        screens: list[str],
        instances: list[str],
    ) -> int:
        """Add one user's events kept elsewhere (the event store), coded in that vocabulary
        (``screens``/``instances``); only those with ``lo_ms <= t <= hi_ms``. ``t`` is sorted.
        Returns how many were added."""
        a = int(np.searchsorted(t, self.lo_ms, side="left"))
        b = int(np.searchsorted(t, self.hi_ms, side="right"))
        if b <= a:
            return 0
        screen_map = self._codes(self.screens, screens)
        inst_map = self._codes(self.instances, instances)
        self._append(user, t[a:b], screen_map[screen[a:b]], inst_map[instance[a:b]])
        return b - a

    @staticmethod
    def _codes(vocabulary: dict[str, int], values: list[str]) -> np.ndarray:
        """Codes of ``values``, new ones numbered in order of first appearance."""
        if not vocabulary.keys() >= set(values):
            for value in dict.fromkeys(values):
                if value not in vocabulary:
                    vocabulary[value] = len(vocabulary)
        return np.fromiter(map(vocabulary.__getitem__, values), dtype=np.int32, count=len(values))

    def add_each(self, documents: Iterable[Any]) -> None:
        """Document by document: judge each, count and skip the bad ones."""
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
        # whose it is and when, where that can be told: the event store keeps them per user (and day)
        user = doc.get(self.names.user) if isinstance(doc, Mapping) else None
        if type(user) is str and user:
            raw_t = doc.get(self.names.timestamp)
            self.rejected.setdefault(user, []).append((timestamp_ms(raw_t), errors))

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
