"""The compact per-user arrays event documents are read into: 16 bytes per accepted event
instead of a Python list per document, the refused ones counted and sampled.

:class:`EventAccumulator` applies :class:`~worker.sources.documents.EventSchema`'s rules in a
tight loop (a whole batch column by column when it can) and hands only the documents it refuses
to the schema, which confirms them and gives a readable reason.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from .documents import DEFAULT_NAMES, FieldNames, event_schema
from .timestamps import MAX_MS, MIN_MS, iso_ms_many, timestamp_ms


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
        names: FieldNames = DEFAULT_NAMES,
        users: Iterable[str] | None = None,
        lo_ms: int | None = None,
        hi_ms: int | None = None,
    ) -> None:
        self.names = names
        self.users = None if users is None else frozenset(users)
        self.lo_ms = MIN_MS if lo_ms is None else lo_ms
        self.hi_ms = MAX_MS if hi_ms is None else hi_ms
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
            if t.min() < MIN_MS or t.max() > MAX_MS:
                return False
        elif kinds == {str}:
            parsed = iso_ms_many(raw_t)
            if parsed is None:
                return False
            t = parsed
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
        first_seen = {u: k for k, u in enumerate(dict.fromkeys(users))}
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
