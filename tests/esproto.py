"""An in-process HTTP server that speaks enough of the Elasticsearch REST protocol for the
official ``elasticsearch`` client: the project's tests and benchmarks run against it because no
real Elasticsearch can run on the development and CI machines (see ``/work/shared/ES-WIRE.md``).

Usage::

    with EsProtocolServer() as es:
        es.create_index("usage-events", mappings={"properties": {"@timestamp": {"type": "date"}}})
        es.add_documents("usage-events", docs)           # direct load, no HTTP
        client = Elasticsearch(es.url)
        ...
        assert es.open_pits == 0

What it imitates (single node, one shard per index):

* ``X-Elastic-Product: Elasticsearch`` on every response, errors included; JSON or the
  ``application/vnd.elasticsearch+json; compatible-with=8`` content type, as asked.
* ``GET /``, ``HEAD /``, ``PUT|HEAD|GET|DELETE /{index}``, ``POST /{index}/_refresh``,
  ``PUT|POST /_bulk`` and ``/{index}/_bulk`` (index, create, delete; per-item results),
  ``PUT|POST /{index}/_doc[/{id}]``, ``GET /{index}/_doc/{id}``, ``POST /{index}/_count``,
  ``POST /{index}/_pit?keep_alive=``, ``DELETE /_pit``, ``POST /_search`` (with a PIT),
  ``POST /{index}/_search`` (plain, or ``?scroll=``), ``POST /_search/scroll``,
  ``DELETE /_search/scroll``.
* Search: ``query`` (``bool`` with ``filter``/``must``/``should``/``must_not``, ``term``,
  ``terms``, ``range``, ``exists``, ``ids``, ``match_all``, ``match_none``), ``sort`` on
  ``_doc``, ``_shard_doc`` and date/number fields, ``search_after`` (length checked against the
  sort), ``slice {id, max}``, ``size``/``from``, ``track_total_hits``, ``_source`` filtering,
  ``filter_path`` (``*`` and ``**`` wildcards).
* Documents are stored as the raw bytes they were indexed with (``_source`` comes back exactly as
  indexed) plus typed columns for queries: dates as int64 epoch ms (parsed like
  ``strict_date_optional_time||epoch_millis``, with ES's round-up of ``lte``/``gt`` bounds that
  lack components), keywords dictionary-encoded, numbers as float64. Unparsable dates are
  refused at index time like ES does (``document_parsing_exception``).
* A point in time is a snapshot of the index when it was opened (later documents are not seen),
  expires after its ``keep_alive`` and is gone after ``DELETE /_pit``. ``open_pits`` counts the
  live ones. PIT ids change on every response (clients must send back the newest one; older ids
  stay valid as in ES).

Simplifications: one shard; documents are visible at once (no refresh interval); dynamically
mapped strings are keywords (``x`` and ``x.keyword`` both work); array values are not indexed.

Fault injection (``es.faults``) and a request log (``es.log``) let tests break the transport and
check what the client sent.
"""

from __future__ import annotations

import base64
import bisect
import gzip
import itertools
import random
import re
import socket
import struct
import threading
import time
from array import array
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import orjson

__all__ = ["EsProtocolServer", "Faults", "LoggedRequest", "EsError"]

_MISSING_DATE = np.iinfo(np.int64).min
_SORT_MISSING = np.iinfo(np.int64).max  # what ES reports for a missing value sorted ascending
_MAX_KEEP_ALIVE_S = 24 * 3600
_SHARD_DOC_BASE = 1 << 32  # _shard_doc = (shard index << 32) | doc; we are "shard 1"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ISO = re.compile(
    r"^(?P<y>[+-]?\d{4,9})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?)?)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_DIGITS = re.compile(r"-?\d+")
_DATE_TYPES = {"date", "date_nanos"}
_KEYWORD_TYPES = {"keyword", "text", "constant_keyword", "wildcard", "match_only_text", "boolean"}
_NUMBER_TYPES = {
    "long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long",
}


# --------------------------------------------------------------------------------------------
# errors


class EsError(Exception):
    """An error answered with Elasticsearch's error body."""

    def __init__(self, status: int, type_: str, reason: str, *, root: list[dict] | None = None,
                 extra: dict | None = None, headers: dict | None = None) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason = status, type_, reason
        self.root = root if root is not None else [{"type": type_, "reason": reason}]
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict:
        err = {"root_cause": self.root, "type": self.type, "reason": self.reason, **self.extra}
        return {"error": err, "status": self.status}


def _bad_request(reason: str, type_: str = "illegal_argument_exception") -> EsError:
    return EsError(400, type_, reason)


def _query_error(reason: str, type_: str = "query_shard_exception", index: str | None = None) -> EsError:
    root = {"type": type_, "reason": reason, "index": index}
    return EsError(400, "search_phase_execution_exception", "all shards failed", root=[root],
                   extra={"phase": "query", "grouped": True,
                          "failed_shards": [{"shard": 0, "index": index, "reason": root}]})


def _index_not_found(name: str) -> EsError:
    return EsError(404, "index_not_found_exception", f"no such index [{name}]",
                   root=[{"type": "index_not_found_exception", "reason": f"no such index [{name}]",
                          "resource.type": "index_or_alias", "resource.id": name, "index": name}],
                   extra={"resource.type": "index_or_alias", "resource.id": name, "index": name})


def _context_missing(what: str) -> EsError:
    # ES wraps it: type search_phase_execution_exception, root cause search_context_missing_exception
    reason = f"No search context found for id [{what}]"
    root = {"type": "search_context_missing_exception", "reason": reason}
    return EsError(404, "search_phase_execution_exception", "all shards failed", root=[root],
                   extra={"phase": "query", "grouped": True,
                          "failed_shards": [{"shard": -1, "index": None, "reason": root}],
                          "caused_by": root})


# --------------------------------------------------------------------------------------------
# dates


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
        dt = datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc)
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
    nxt = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=timezone.utc)
    delta = nxt - _EPOCH
    return (delta.days * 86400 + delta.seconds - offset_s) * 1000 - 1


_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "micros": 1e-6, "nanos": 1e-9}


def parse_time_value(text: str, what: str = "keep_alive") -> float:
    m = re.fullmatch(r"(\d+)(d|h|m|s|ms|micros|nanos)", str(text).strip())
    if not m:
        raise _bad_request(f"failed to parse setting [{what}] with value [{text}] as a time value: "
                           "unit is missing or unrecognized", "parse_exception")
    return int(m[1]) * _UNITS[m[2]]


# --------------------------------------------------------------------------------------------
# storage


class _Column:
    __slots__ = ("kind", "data", "vocab", "values", "missing")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "date" | "keyword" | "number"
        self.missing: Any = {"date": _MISSING_DATE, "keyword": -1, "number": float("nan")}[kind]
        if kind == "date":
            self.data = array("q")
        elif kind == "keyword":
            self.data = array("i")
            self.vocab: dict[str, int] = {}
            self.values: list[str] = []
        else:
            self.data = array("d")

    def convert(self, value: Any) -> Any:
        """The stored form of a value, or raise ValueError (the document is refused)."""
        if value is None:
            return self.missing
        if self.kind == "date":
            out = parse_date(value)
            if out is None:
                raise ValueError("date")
            return out
        if self.kind == "keyword":
            if isinstance(value, (dict, list)):
                raise ValueError("keyword")
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            code = self.vocab.get(text)
            if code is None:
                code = self.vocab[text] = len(self.values)
                self.values.append(text)
            return code
        if isinstance(value, bool) or isinstance(value, (dict, list)):
            raise ValueError("number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("number") from None

    def code_of(self, value: Any) -> int:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return self.vocab.get(text, -2)

    def view(self, n: int) -> np.ndarray:
        """A copy of the first ``n`` stored values, padded with ``missing``."""
        dtype = {"date": np.int64, "keyword": np.int32, "number": np.float64}[self.kind]
        have = min(n, len(self.data))
        out = np.empty(n, dtype=dtype)
        if have:
            buf = np.frombuffer(self.data, dtype=dtype, count=have)
            out[:have] = buf
            del buf
        out[have:] = self.missing
        return out


@dataclass(frozen=True)
class _Snapshot:
    n: int  # documents visible: slots [0, n)
    k: int  # tombstones visible: the first k deletions


class _Index:
    """One index: raw sources in one bytearray, typed columns for queries, append-only slots."""

    def __init__(self, name: str, mappings: Mapping[str, Any] | None = None,
                 settings: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.lock = threading.RLock()
        self.mappings: dict[str, Any] = dict(mappings or {})
        self.settings: dict[str, Any] = dict(settings or {})
        self.uuid = base64.urlsafe_b64encode(random.randbytes(16)).decode().rstrip("=")
        self.buf = bytearray()
        self.offsets = array("q", [0])
        self.explicit_ids: dict[int, str] = {}
        self.id_to_slot: dict[str, int] = {}
        self.tombstones: list[int] = []  # slots, in deletion order
        self.tombstone_seq: dict[int, int] = {}
        self.columns: dict[str, _Column] = {}
        self.field_types: dict[str, str] = {}
        self.dynamic = True
        self.match_cache: OrderedDict[Any, Any] = OrderedDict()
        for fname, spec in _flatten_properties(self.mappings.get("properties", {})).items():
            self._declare(fname, spec.get("type", "object"))
        if self.mappings.get("dynamic") in (False, "false", "strict"):
            self.dynamic = False

    # -- schema
    def _declare(self, fname: str, es_type: str) -> _Column | None:
        self.field_types[fname] = es_type
        if es_type in _DATE_TYPES:
            kind = "date"
        elif es_type in _KEYWORD_TYPES:
            kind = "keyword"
        elif es_type in _NUMBER_TYPES:
            kind = "number"
        else:
            return None
        col = self.columns[fname] = _Column(kind)
        return col

    def _column_for_new(self, fname: str, value: Any) -> _Column | None:
        if not self.dynamic or value is None or isinstance(value, list):
            return None
        if isinstance(value, bool):
            return self._declare(fname, "boolean")
        if isinstance(value, int):
            return self._declare(fname, "long")
        if isinstance(value, float):
            return self._declare(fname, "float")
        if isinstance(value, str):
            looks_date = len(value) >= 10 and value[4:5] == "-" and parse_date(value) is not None
            return self._declare(fname, "date" if looks_date else "keyword")
        return None

    def mapping_body(self) -> dict:
        props: dict[str, Any] = {}
        for fname, es_type in self.field_types.items():
            node = props
            parts = fname.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {"properties": {}})["properties"]
            node[parts[-1]] = {"type": es_type}
        return {"properties": props}

    # -- documents
    @property
    def n(self) -> int:
        return len(self.offsets) - 1

    def snapshot(self) -> _Snapshot:
        with self.lock:
            return _Snapshot(self.n, len(self.tombstones))

    def doc_id(self, slot: int) -> str:
        got = self.explicit_ids.get(slot)
        return got if got is not None else f"{slot:x}-{self.uuid[:8]}"

    def slot_of(self, doc_id: str) -> int | None:
        slot = self.id_to_slot.get(doc_id)
        if slot is not None:
            return slot
        head, _, tail = doc_id.partition("-")
        if tail == self.uuid[:8]:
            try:
                slot = int(head, 16)
            except ValueError:
                return None
            if slot < self.n and slot not in self.explicit_ids:
                return slot
        return None

    def source(self, slot: int) -> bytes:
        return bytes(self.buf[self.offsets[slot]:self.offsets[slot + 1]])

    def live(self, slot: int) -> bool:
        return slot < self.n and slot not in self.tombstone_seq

    def index_document(self, raw: bytes, doc: Any, doc_id: str | None, op: str) -> tuple[int, str, str]:
        """Store one document; returns (status, id, result). Raises EsError for a refused one."""
        if not isinstance(doc, dict):
            raise EsError(400, "document_parsing_exception",
                          "[1:1] failed to parse: the document is not a JSON object")
        with self.lock:
            old = self.slot_of(doc_id) if doc_id is not None else None
            if old is not None and not self.live(old):
                old = None
            if old is not None and op == "create":
                raise EsError(409, "version_conflict_engine_exception",
                              f"[{doc_id}]: version conflict, document already exists (current version [1])",
                              extra={"index": self.name, "shard": "0"})
            slot = self.n
            pending: list[tuple[_Column, Any]] = []
            for fname, value in _flatten_doc(doc):
                col = self.columns.get(fname)
                if col is None:
                    if fname in self.field_types:
                        continue
                    if isinstance(value, list) or value is None:
                        continue
                    col = self._column_for_new(fname, value)
                    if col is None:
                        continue
                if isinstance(value, list):
                    continue  # arrays are not indexed by this imitation
                try:
                    pending.append((col, col.convert(value)))
                except ValueError:
                    preview = orjson.dumps(value).decode()[:50]
                    raise EsError(
                        400, "document_parsing_exception",
                        f"[1:2] failed to parse field [{fname}] of type [{self.field_types[fname]}] "
                        f"in document with id '{doc_id or slot}'. Preview of field's value: '{preview}'",
                        extra={"caused_by": {"type": "illegal_argument_exception",
                                             "reason": f"failed to parse [{preview}]"}},
                    ) from None
            for col, stored in pending:
                data = col.data
                if len(data) < slot:
                    data.extend([col.missing] * (slot - len(data)))
                data.append(stored)
            self.buf += raw
            self.offsets.append(len(self.buf))
            if old is not None:
                self._tombstone(old)
            if doc_id is not None:
                self.explicit_ids[slot] = doc_id
                self.id_to_slot[doc_id] = slot
            if self.match_cache:
                self.match_cache.clear()
        return (200, self.doc_id(slot), "updated") if old is not None else (201, self.doc_id(slot), "created")

    def delete_document(self, doc_id: str) -> bool:
        with self.lock:
            slot = self.slot_of(doc_id)
            if slot is None or not self.live(slot):
                return False
            self._tombstone(slot)
            self.match_cache.clear()
            return True

    def _tombstone(self, slot: int) -> None:
        self.tombstone_seq[slot] = len(self.tombstones)
        self.tombstones.append(slot)

    # -- queries
    def visible_mask(self, snap: _Snapshot) -> np.ndarray:
        mask = np.ones(snap.n, dtype=bool)
        for slot in self.tombstones[: snap.k]:
            if slot < snap.n:
                mask[slot] = False
        return mask

    def matches(self, snap: _Snapshot, query: Any, sort: list[tuple[str, bool]],
                slice_: tuple[int, int] | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Slots matching ``query`` in ``sort`` order, with the sort value columns (same order)."""
        key = (snap, orjson.dumps(query, option=orjson.OPT_SORT_KEYS), tuple(sort), slice_)
        with self.lock:
            hit = self.match_cache.get(key)
            if hit is not None:
                self.match_cache.move_to_end(key)
                return hit
            mask = self.visible_mask(snap) & _QueryEval(self, snap.n).eval(query)
            if slice_ is not None:
                sid, smax = slice_
                mask[np.arange(snap.n) % smax != sid] = False
            slots = np.flatnonzero(mask).astype(np.int64)
            keys: list[np.ndarray] = []
            for fname, desc in sort:
                if fname in ("_doc", "_shard_doc"):
                    vals = slots if fname == "_doc" else slots + _SHARD_DOC_BASE
                elif fname == "_score":
                    vals = np.zeros(len(slots), dtype=np.int64)
                else:
                    col = self.columns.get(fname)
                    if col is None or col.kind == "keyword":
                        raise _query_error(f"No mapping found for [{fname}] in order to sort on",
                                           index=self.name)
                    vals = col.view(snap.n)[slots]
                    if col.kind == "date":  # missing values sort last, both ways, as in ES
                        vals = np.where(vals == _MISSING_DATE, np.iinfo(np.int64).min if desc else _SORT_MISSING, vals)
                keys.append(vals)
            if any(f not in ("_doc", "_shard_doc") or d for f, d in sort):
                # float negation for descending keys: no int64 overflow, exact below 2**53
                lex = [(-k.astype(np.float64) if d else k) for k, (_, d) in zip(keys, sort)]
                order = np.lexsort([slots] + lex[::-1])
                slots = slots[order]
                keys = [k[order] for k in keys]
            result = (slots, keys)
            self.match_cache[key] = result
            while len(self.match_cache) > 16:
                self.match_cache.popitem(last=False)
            return result


def _flatten_properties(props: Mapping[str, Any], prefix: str = "") -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, spec in props.items():
        full = prefix + name
        if "properties" in spec:
            out.update(_flatten_properties(spec["properties"], full + "."))
        else:
            out[full] = spec
    return out


def _flatten_doc(doc: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for name, value in doc.items():
        if isinstance(value, dict):
            yield from _flatten_doc(value, prefix + name + ".")
        else:
            yield prefix + name, value


class _QueryEval:
    def __init__(self, index: _Index, n: int) -> None:
        self.index, self.n = index, n

    def eval(self, query: Any) -> np.ndarray:
        if query is None:
            return np.ones(self.n, dtype=bool)
        if not isinstance(query, dict) or len(query) != 1:
            raise EsError(400, "parsing_exception", "[_na] query malformed, must start with start_object"
                          if not isinstance(query, dict) else "[_na] query malformed, no start_object after query name")
        (kind, spec), = query.items()
        method = getattr(self, "_q_" + kind, None)
        if method is None:
            raise EsError(400, "parsing_exception", f"unknown query [{kind}]",
                          root=[{"type": "parsing_exception", "reason": f"unknown query [{kind}]", "line": 1, "col": 1}])
        return method(spec)

    def _list(self, spec: Any) -> list:
        return [] if spec is None else (spec if isinstance(spec, list) else [spec])

    def _q_match_all(self, spec: Any) -> np.ndarray:
        return np.ones(self.n, dtype=bool)

    def _q_match_none(self, spec: Any) -> np.ndarray:
        return np.zeros(self.n, dtype=bool)

    def _q_bool(self, spec: Any) -> np.ndarray:
        if not isinstance(spec, dict):
            raise EsError(400, "parsing_exception", "[bool] query malformed")
        unknown = set(spec) - {"must", "filter", "should", "must_not", "minimum_should_match", "boost", "_name"}
        if unknown:
            raise EsError(400, "parsing_exception", f"[bool] query does not support [{sorted(unknown)[0]}]")
        mask = np.ones(self.n, dtype=bool)
        required = self._list(spec.get("must")) + self._list(spec.get("filter"))
        for q in required:
            mask &= self.eval(q)
        should = self._list(spec.get("should"))
        if should:
            msm = spec.get("minimum_should_match", 0 if required else 1)
            msm = int(msm) if not isinstance(msm, str) or not msm.endswith("%") else 1
            if msm > 0:
                count = np.zeros(self.n, dtype=np.int32)
                for q in should:
                    count += self.eval(q)
                mask &= count >= msm
        for q in self._list(spec.get("must_not")):
            mask &= ~self.eval(q)
        return mask

    def _field(self, spec: Any, qname: str) -> tuple[str, Any]:
        if not isinstance(spec, dict):
            raise EsError(400, "parsing_exception", f"[{qname}] query malformed, no start_object after query name")
        items = [(k, v) for k, v in spec.items() if k not in ("boost", "_name")]
        if len(items) != 1:
            raise EsError(400, "parsing_exception", f"[{qname}] query doesn't support multiple fields")
        return items[0]

    def _column(self, fname: str) -> _Column | None:
        col = self.index.columns.get(fname)
        if col is None and fname.endswith(".keyword"):
            base = self.index.columns.get(fname[: -len(".keyword")])
            if base is not None and base.kind == "keyword":
                col = base
        return col

    def _values_mask(self, fname: str, values: list, qname: str) -> np.ndarray:
        col = self._column(fname)
        if col is None:
            return np.zeros(self.n, dtype=bool)  # an unmapped field matches nothing
        data = col.view(self.n)
        if col.kind == "keyword":
            codes = [c for c in (col.code_of(v) for v in values if not isinstance(v, (dict, list))) if c >= 0]
            return np.isin(data, np.array(codes, dtype=np.int32)) if codes else np.zeros(self.n, dtype=bool)
        wanted = []
        for v in values:
            parsed = parse_date(v) if col.kind == "date" else _to_float(v)
            if parsed is None:
                raise _query_error(f"failed to create query: {qname} value [{v}] is not valid for field [{fname}]",
                                   index=self.index.name)
            wanted.append(parsed)
        return np.isin(data, np.array(wanted, dtype=data.dtype))

    def _q_term(self, spec: Any) -> np.ndarray:
        fname, value = self._field(spec, "term")
        if isinstance(value, dict):
            if "value" not in value:
                raise EsError(400, "parsing_exception", "[term] query does not support a missing [value]")
            value = value["value"]
        return self._values_mask(fname, [value], "term")

    def _q_terms(self, spec: Any) -> np.ndarray:
        fname, values = self._field(spec, "terms")
        if not isinstance(values, list):
            raise EsError(400, "parsing_exception", "[terms] query does not support [" + fname + "]")
        if len(values) > 65536:
            raise _query_error("The number of terms [%d] used in the Terms Query request has exceeded "
                               "the allowed maximum of [65536]." % len(values), "illegal_argument_exception",
                               self.index.name)
        return self._values_mask(fname, values, "terms")

    def _q_ids(self, spec: Any) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        for doc_id in (spec or {}).get("values", []):
            slot = self.index.slot_of(str(doc_id))
            if slot is not None and slot < self.n:
                mask[slot] = True
        return mask

    def _q_exists(self, spec: Any) -> np.ndarray:
        col = self._column((spec or {}).get("field", ""))
        if col is None:
            return np.zeros(self.n, dtype=bool)
        data = col.view(self.n)
        if col.kind == "number":
            return ~np.isnan(data)
        return data != col.missing

    def _q_range(self, spec: Any) -> np.ndarray:
        fname, bounds = self._field(spec, "range")
        if not isinstance(bounds, dict):
            raise EsError(400, "parsing_exception", "[range] query malformed, no start_object after query name")
        allowed = {"gte", "gt", "lte", "lt", "from", "to", "include_lower", "include_upper",
                   "format", "time_zone", "boost", "relation", "_name"}
        unknown = set(bounds) - allowed
        if unknown:
            raise EsError(400, "parsing_exception", f"[range] query does not support [{sorted(unknown)[0]}]")
        col = self._column(fname)
        if col is None:
            return np.zeros(self.n, dtype=bool)
        if col.kind == "keyword":
            raise _query_error(f"range queries on keyword field [{fname}] are not supported by this test server",
                               index=self.index.name)
        data = col.view(self.n)
        mask = data != _MISSING_DATE if col.kind == "date" else ~np.isnan(data)
        for op in ("gte", "gt", "lte", "lt"):
            if op not in bounds or bounds[op] is None:
                continue
            raw = bounds[op]
            if col.kind == "date":
                value = parse_date(raw, round_up=op in ("lte", "gt"))
                if value is None:
                    raise _query_error(
                        f"failed to parse date field [{raw}] with format [strict_date_optional_time||epoch_millis]",
                        "parse_exception", self.index.name)
            else:
                value = _to_float(raw)
                if value is None:
                    raise _query_error(f"For input string: \"{raw}\"", "number_format_exception", self.index.name)
            if op == "gte":
                mask &= data >= value
            elif op == "gt":
                mask &= data > value
            elif op == "lte":
                mask &= data <= value
            else:
                mask &= data < value
        return mask


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# response shaping


class _Raw:
    """Pre-serialised JSON kept as bytes until the response is written."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


def _default(obj: Any) -> Any:
    if isinstance(obj, _Raw):
        return orjson.Fragment(obj.raw)
    if isinstance(obj, np.integer):
        return int(obj)
    raise TypeError(type(obj).__name__)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default)


_DROP = object()


def apply_filter_path(obj: Any, filter_path: str | None) -> Any:
    """ES's ``filter_path``: keep only the listed dotted paths (``*``, ``**`` wildcards)."""
    if not filter_path:
        return obj
    patterns = [p.split(".") for p in filter_path.split(",") if p and not p.startswith("-")]
    if not patterns:
        return obj
    out = _filter(obj, patterns)
    return {} if out is _DROP else out


def _filter(obj: Any, patterns: list[list[str]]) -> Any:
    if any(not p for p in patterns):
        return obj
    if isinstance(obj, _Raw):
        obj = orjson.loads(obj.raw)
    if isinstance(obj, list):
        kept = [r for r in (_filter(item, patterns) for item in obj) if r is not _DROP]
        return kept if kept else _DROP
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            sub: list[list[str]] = []
            for p in patterns:
                if p[0] == "**":
                    sub.append(p)  # ** may match more levels
                    if len(p) > 1 and fnmatchcase(key, p[1]):
                        sub.append(p[2:])
                elif fnmatchcase(key, p[0]):
                    sub.append(p[1:])
            if sub:
                r = _filter(value, sub)
                if r is not _DROP:
                    out[key] = r
        return out if out else _DROP
    return obj if any(p == ["**"] for p in patterns) else _DROP


def _source_filter(spec: Any) -> tuple[bool, list[str], list[str]]:
    """(enabled, includes, excludes) of a ``_source`` request value."""
    if spec is None or spec is True:
        return True, [], []
    if spec is False:
        return False, [], []
    if isinstance(spec, str):
        return True, [spec], []
    if isinstance(spec, list):
        return True, [str(s) for s in spec], []
    if isinstance(spec, dict):
        inc = spec.get("includes", spec.get("include", []))
        exc = spec.get("excludes", spec.get("exclude", []))
        return True, [inc] if isinstance(inc, str) else list(inc), [exc] if isinstance(exc, str) else list(exc)
    raise _bad_request(f"[_source] unsupported value [{spec}]", "parsing_exception")


def _filter_source(raw: bytes, includes: list[str], excludes: list[str]) -> Any:
    if not includes and not excludes:
        return _Raw(raw)
    doc = orjson.loads(raw)
    if isinstance(doc, dict) and includes and not excludes and all(k in includes for k in doc):
        return _Raw(raw)  # nothing to drop: exactly as indexed

    def keep(path: str, value: Any) -> Any:
        if isinstance(value, dict):
            sub = {k: r for k, v in value.items() if (r := keep(f"{path}.{k}" if path else k, v)) is not _DROP}
            if path and any(fnmatchcase(path, p) for p in includes) and not any(fnmatchcase(path, e) for e in excludes):
                return value if not excludes else sub
            return sub if sub else _DROP
        if includes and not any(fnmatchcase(path, p) or path.startswith(p + ".") for p in includes):
            return _DROP
        if any(fnmatchcase(path, e) for e in excludes):
            return _DROP
        return value

    out = keep("", doc)
    return {} if out is _DROP else out


# --------------------------------------------------------------------------------------------
# contexts: point in time and scroll


@dataclass
class _Pit:
    num: int
    index: _Index
    snap: _Snapshot
    keep_alive_s: float
    expires_at: float
    generation: int = 0
    pages: int = 0
    expire_after_pages: int | None = None


@dataclass
class _Scroll:
    num: int
    index: _Index
    slots: np.ndarray
    keys: list[np.ndarray]
    pos: int
    size: int
    body: dict
    keep_alive_s: float
    expires_at: float
    cache_key: Any


# --------------------------------------------------------------------------------------------
# faults and the request log


@dataclass
class LoggedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes | None  # None when larger than the log's body limit
    status: int = 0
    fault: str | None = None

    def json(self) -> Any:
        return None if not self.body else orjson.loads(self.body)


class Faults:
    """What to break. Every setting is off by default; ``reset()`` turns all off.

    * ``fail_searches(rate, kinds=(429, 503, "reset"), seed=0)``: that share of ``_search``
      requests (PIT, plain and scroll pages) answers 429 ``es_rejected_execution_exception``,
      503 or closes the connection without a response (``"reset"``), drawn from a seeded RNG.
    * ``always(status=503)``: every request answers that status (``"reset"`` also allowed).
    * ``expire_pit_after(pages, times=1)``: a PIT answers 404 ``search_context_missing_exception``
      once it has served ``pages`` pages; applies to the next ``times`` PITs opened.
    * ``require_auth(api_key=..., basic=(user, password))``: a request without one of these
      credentials answers 401 ``security_exception``. ``api_key`` is the encoded key or
      ``(id, key)``.
    * ``forbid()``: every request answers 403 (an authenticated user without the privilege).
    * ``delay(seconds, path_contains="_search")``: sleep before answering matching requests.
    * ``partial_failures(rate, seed=0)``: that share of ``_search`` answers 200 with one failed shard.

    ``injected`` counts the faults actually injected, by kind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.search_failure_rate = 0.0
            self.search_failure_kinds: tuple[Any, ...] = (429, 503, "reset")
            self._rng = random.Random(0)
            self.always_status: int | str | None = None
            self.pit_expire_after_pages: int | None = None
            self.pit_expire_times = 0
            self.api_keys: set[str] = set()
            self.basic: set[str] = set()
            self.auth_required = False
            self.forbidden = False
            self.delay_s = 0.0
            self.delay_path = "_search"
            self.partial_failure_rate = 0.0

    def fail_searches(self, rate: float, kinds: Iterable[Any] = (429, 503, "reset"), seed: int = 0) -> None:
        with self._lock:
            self.search_failure_rate = float(rate)
            self.search_failure_kinds = tuple(kinds)
            self._rng = random.Random(seed)

    def always(self, status: int | str | None = 503) -> None:
        self.always_status = status

    def expire_pit_after(self, pages: int, times: int = 1) -> None:
        self.pit_expire_after_pages, self.pit_expire_times = pages, times

    def require_auth(self, api_key: str | tuple[str, str] | None = None,
                     basic: tuple[str, str] | None = None) -> None:
        if isinstance(api_key, tuple):
            api_key = base64.b64encode(f"{api_key[0]}:{api_key[1]}".encode()).decode()
        if api_key:
            self.api_keys.add(api_key)
        if basic:
            self.basic.add(base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode())
        self.auth_required = True

    def forbid(self, on: bool = True) -> None:
        self.forbidden = on

    def delay(self, seconds: float, path_contains: str = "_search") -> None:
        self.delay_s, self.delay_path = seconds, path_contains

    def partial_failures(self, rate: float, seed: int = 0) -> None:
        with self._lock:
            self.partial_failure_rate = rate
            self._rng = random.Random(seed)

    # -- used by the server
    def draw_search_failure(self) -> Any:
        with self._lock:
            if self.search_failure_rate and self._rng.random() < self.search_failure_rate:
                return self._rng.choice(self.search_failure_kinds)
        return None

    def draw_partial_failure(self) -> bool:
        with self._lock:
            return bool(self.partial_failure_rate) and self._rng.random() < self.partial_failure_rate

    def authorized(self, header: str | None) -> bool:
        if not self.auth_required:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "apikey":
            return value.strip() in self.api_keys
        if scheme.lower() == "basic":
            return value.strip() in self.basic
        return False

    def count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1


class _Reset(Exception):
    """Close the connection without answering."""


# --------------------------------------------------------------------------------------------
# the server


class EsProtocolServer:
    """A threaded HTTP server on 127.0.0.1 speaking the Elasticsearch REST protocol.

    ``cache_pages=True`` keeps every rendered search page (keyed by snapshot, request and
    position) so that repeated scans are answered from memory: benchmarks use it to take the
    server's rendering cost out of client-side measurements.
    """

    version = "8.15.0"

    def __init__(self, *, port: int = 0, cache_pages: bool = False, log_limit: int = 10_000,
                 log_body_limit: int = 1 << 20, empty_filter_path_drops_pit_id: bool = True) -> None:
        self.faults = Faults()
        self.log: deque[LoggedRequest] = deque(maxlen=log_limit)
        self.log_body_limit = log_body_limit
        self.cache_pages = cache_pages
        self.empty_filter_path_drops_pit_id = empty_filter_path_drops_pit_id
        self._indices: dict[str, _Index] = {}
        self._lock = threading.RLock()
        self._pits: dict[int, _Pit] = {}
        self._scrolls: dict[int, _Scroll] = {}
        self._ctx_counter = itertools.count(1)
        self._page_cache: dict[Any, bytes] = {}
        self.pits_opened = 0
        self.pits_closed = 0
        self.stale_pit_searches = 0  # PIT searches that did not send the newest pit_id back
        self.time_offset_s = 0.0
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.handler_errors: list[str] = []

    # -- lifecycle
    def start(self) -> EsProtocolServer:
        server = self
        handler = type("_BoundHandler", (_Handler,), {"es": server})
        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        httpd.handle_error = self._handle_error  # type: ignore[method-assign]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="esproto", daemon=True)
        self._thread.start()
        return self

    def _handle_error(self, request: Any, client_address: Any) -> None:
        # a connection-level failure (the client went away) or a bug here: keep it for tests
        import traceback

        self.handler_errors.append(traceback.format_exc())

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = None

    def __enter__(self) -> EsProtocolServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- clock (tests may move it forward to expire contexts)
    def now(self) -> float:
        return time.monotonic() + self.time_offset_s

    def advance_time(self, seconds: float) -> None:
        self.time_offset_s += seconds

    # -- direct data access (no HTTP)
    def create_index(self, name: str, mappings: Mapping[str, Any] | None = None,
                     settings: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            if name in self._indices:
                raise EsError(400, "resource_already_exists_exception",
                              f"index [{name}/{self._indices[name].uuid}] already exists",
                              extra={"index": name})
            self._indices[name] = _Index(name, mappings, settings)

    def index(self, name: str) -> _Index:
        with self._lock:
            idx = self._indices.get(name)
        if idx is None:
            raise _index_not_found(name)
        return idx

    def has_index(self, name: str) -> bool:
        return name in self._indices

    def add_documents(self, name: str, documents: Iterable[Mapping[str, Any] | bytes],
                      ids: Iterable[str] | None = None) -> int:
        """Index documents (dicts, or their JSON bytes) directly; creates the index if missing.

        Raises :class:`EsError` on the first refused document. Returns how many were added.
        """
        with self._lock:
            if name not in self._indices:
                self._indices[name] = _Index(name)
            idx = self._indices[name]
        id_iter = iter(ids) if ids is not None else None
        count = 0
        with idx.lock:
            for doc in documents:
                if isinstance(doc, (bytes, bytearray)):
                    raw, parsed = bytes(doc), orjson.loads(doc)
                else:
                    raw, parsed = orjson.dumps(doc), doc
                idx.index_document(raw, parsed, next(id_iter) if id_iter is not None else None, "index")
                count += 1
        return count

    def count(self, name: str) -> int:
        idx = self.index(name)
        snap = idx.snapshot()
        return int(idx.visible_mask(snap).sum())

    def sources(self, name: str) -> list[Any]:
        """Every visible document of an index, parsed (for test assertions)."""
        idx = self.index(name)
        snap = idx.snapshot()
        return [orjson.loads(idx.source(s)) for s in np.flatnonzero(idx.visible_mask(snap))]

    @property
    def open_pits(self) -> int:
        with self._lock:
            self._reap()
            return len(self._pits)

    @property
    def open_scrolls(self) -> int:
        with self._lock:
            self._reap()
            return len(self._scrolls)

    def requests(self, method: str | None = None, path_contains: str | None = None) -> list[LoggedRequest]:
        return [r for r in list(self.log)
                if (method is None or r.method == method) and (path_contains is None or path_contains in r.path)]

    # -- contexts
    def _reap(self) -> None:
        now = self.now()
        for num in [n for n, p in self._pits.items() if p.expires_at < now]:
            del self._pits[num]
        for num in [n for n, s in self._scrolls.items() if s.expires_at < now]:
            del self._scrolls[num]

    @staticmethod
    def _encode_ctx(prefix: str, num: int, gen: int) -> str:
        payload = f"{prefix}:{num}:{gen}:".encode() + random.randbytes(24)
        return base64.urlsafe_b64encode(payload).decode()

    @staticmethod
    def _decode_ctx(prefix: str, text: Any) -> int | None:
        got = EsProtocolServer._decode_ctx_gen(prefix, text)
        return None if got is None else got[0]

    @staticmethod
    def _decode_ctx_gen(prefix: str, text: Any) -> tuple[int, int] | None:
        try:
            raw = base64.urlsafe_b64decode(str(text).encode())
            head, num, gen, _ = raw.split(b":", 3)
            return (int(num), int(gen)) if head.decode() == prefix else None
        except (ValueError, UnicodeDecodeError):
            return None

    def open_pit(self, name: str, keep_alive: str) -> str:
        idx = self.index(name)
        ka = parse_time_value(keep_alive)
        if ka > _MAX_KEEP_ALIVE_S:
            raise _bad_request("Keep alive for request (1d) is too large. It must be less than (1d). "
                               "This limit can be set by changing the [search.max_keep_alive] cluster level setting.")
        with self._lock:
            self._reap()
            num = next(self._ctx_counter)
            pit = _Pit(num, idx, idx.snapshot(), ka, self.now() + ka)
            if self.faults.pit_expire_after_pages is not None and self.faults.pit_expire_times > 0:
                pit.expire_after_pages = self.faults.pit_expire_after_pages
                self.faults.pit_expire_times -= 1
            self._pits[num] = pit
            self.pits_opened += 1
            return self._encode_ctx("pit", num, 0)

    def close_pit(self, pit_id: Any) -> bool:
        num = self._decode_ctx("pit", pit_id)
        with self._lock:
            self._reap()
            if num is not None and self._pits.pop(num, None) is not None:
                self.pits_closed += 1
                return True
        return False


# --------------------------------------------------------------------------------------------
# request handling


_JSON = "application/json"
_VND_JSON = "application/vnd.elasticsearch+json;compatible-with=8"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "esproto"
    disable_nagle_algorithm = True
    es: EsProtocolServer  # set on the bound subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.es._lock:
            self.es._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        with self.es._lock:
            self.es._conns.discard(self.connection)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    # -- plumbing
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
        elif "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(parts)
        else:
            body = b""
        if body and (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def _handle(self) -> None:
        es = self.es
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        entry = LoggedRequest(self.command, path, query, {k.lower(): v for k, v in self.headers.items()},
                              body if len(body) <= es.log_body_limit else None)
        es.log.append(entry)
        accept = self.headers.get("Accept") or ""
        ctype = _VND_JSON if "vnd.elasticsearch" in accept else _JSON
        status, headers, payload = 200, {}, b""
        try:
            payload, status = self._dispatch(entry, body)
        except _Reset:
            entry.status, entry.fault = 0, entry.fault or "reset"
            self._reset()
            return
        except EsError as exc:
            status, headers, payload = exc.status, exc.headers, dumps(exc.body())
        except Exception as exc:  # a bug in this server: answer 500 like ES would
            err = EsError(500, "exception", f"esproto internal error: {type(exc).__name__}: {exc}")
            status, payload = 500, dumps(err.body())
        entry.status = status
        self._send(status, payload, ctype, headers)

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True

    def _send(self, status: int, payload: bytes, ctype: str, headers: dict) -> None:
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('Unknown',))[0]}",
                 "X-Elastic-Product: Elasticsearch", f"Content-Type: {ctype}",
                 f"Content-Length: {len(payload)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if self.command == "HEAD":
                self.wfile.write(head)
            else:
                self.wfile.write(head + payload if len(payload) < 65536 else head)
                if len(payload) >= 65536:
                    self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _check_headers(self) -> None:
        for name in ("Accept", "Content-Type"):
            value = self.headers.get(name) or ""
            m = re.search(r"compatible-with=(\d+)", value)
            if m and m[1] not in ("7", "8"):
                raise EsError(400, "media_type_header_exception",
                              f"Invalid media-type value on headers [{name}]",
                              root=[{"type": "media_type_header_exception",
                                     "reason": f"Invalid media-type value on headers [{name}]"}],
                              extra={"caused_by": {"type": "status_exception",
                                                   "reason": "A compatible version is required on both Content-Type "
                                                             "and Accept headers if either one has requested a "
                                                             "compatible version. Compatible versions: [7, 8]"}})

    def _dispatch(self, entry: LoggedRequest, body: bytes) -> tuple[bytes, int]:
        es, faults = self.es, self.es.faults
        path, method = entry.path, entry.method
        if faults.delay_s and faults.delay_path in path:
            faults.count("delay")
            time.sleep(faults.delay_s)
        if faults.always_status is not None:
            entry.fault = f"always:{faults.always_status}"
            faults.count(entry.fault)
            if faults.always_status == "reset":
                raise _Reset()
            raise _status_error(int(faults.always_status))
        if not faults.authorized(self.headers.get("Authorization")):
            entry.fault = "auth"
            faults.count("auth")
            reason = f"missing authentication credentials for REST request [{self.path}]" \
                if not self.headers.get("Authorization") else "unable to authenticate user for REST request"
            raise EsError(401, "security_exception", reason,
                          root=[{"type": "security_exception", "reason": reason,
                                 "header": {"WWW-Authenticate": ['Basic realm="security" charset="UTF-8"', "ApiKey"]}}],
                          extra={"header": {"WWW-Authenticate": ['Basic realm="security" charset="UTF-8"', "ApiKey"]}},
                          headers={"WWW-Authenticate": 'Basic realm="security" charset="UTF-8"'})
        if faults.forbidden:
            entry.fault = "forbidden"
            faults.count("forbidden")
            raise EsError(403, "security_exception",
                          f"action [indices:data/read/search] is unauthorized for user [tester] with "
                          f"effective roles [] on indices [{path.strip('/').split('/')[0]}]")
        self._check_headers()
        parts = [p for p in path.split("/") if p]
        if parts and parts[-1] in ("_search", "scroll") or (len(parts) >= 2 and parts[-2:] == ["_search", "scroll"]):
            kind = faults.draw_search_failure()
            if kind is not None:
                entry.fault = str(kind)
                faults.count(str(kind))
                if kind == "reset":
                    raise _Reset()
                raise _status_error(int(kind))
        try:
            req = orjson.loads(body) if body and not path.endswith("_bulk") else None
        except orjson.JSONDecodeError as exc:
            raise EsError(400, "x_content_parse_exception", f"[1:1] failed to parse the request body: {exc}",
                          root=[{"type": "x_content_parse_exception", "reason": "failed to parse the request body"}]) from None
        return _Router(es, entry, req, body).route(method, parts)


def _status_error(status: int) -> EsError:
    if status == 429:
        return EsError(429, "es_rejected_execution_exception",
                       "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
                       "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=1]")
    if status == 503:
        return EsError(503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];")
    if status == 401:
        return EsError(401, "security_exception", "unable to authenticate user for REST request")
    return EsError(status, "status_exception", f"injected HTTP {status}")


class _Router:
    def __init__(self, es: EsProtocolServer, entry: LoggedRequest, req: Any, body: bytes) -> None:
        self.es, self.entry, self.req, self.body = es, entry, req, body
        self.params = entry.query

    def route(self, method: str, parts: list[str]) -> tuple[bytes, int]:
        n = len(parts)
        if n == 0:
            if method in ("GET", "HEAD"):
                return self.root(), 200
        elif parts[0] == "_bulk" and n == 1 and method in ("PUT", "POST"):
            return self.bulk(None), 200
        elif parts[0] == "_pit" and n == 1 and method == "DELETE":
            return self.close_pit()
        elif parts[0] == "_search" and n == 1 and method in ("GET", "POST"):
            return self.search(None), 200
        elif parts[:2] == ["_search", "scroll"] and method in ("GET", "POST"):
            return self.scroll(parts[2] if n > 2 else None), 200
        elif parts[:2] == ["_search", "scroll"] and method == "DELETE":
            return self.clear_scroll(parts[2] if n > 2 else None)
        elif parts[0] == "_refresh" and n == 1:
            return self._out({"_shards": _shards()}), 200
        elif not parts[0].startswith("_"):
            name = parts[0]
            if n == 1:
                return self.index_op(method, name)
            action = parts[1]
            if action == "_bulk" and n == 2 and method in ("PUT", "POST"):
                return self.bulk(name), 200
            if action == "_pit" and n == 2 and method == "POST":
                return self.open_pit(name), 200
            if action == "_search" and n == 2 and method in ("GET", "POST"):
                return self.search(name), 200
            if action == "_count" and n == 2 and method in ("GET", "POST"):
                return self.count(name), 200
            if action == "_refresh" and n == 2 and method in ("GET", "POST"):
                self.es.index(name)
                return self._out({"_shards": _shards()}), 200
            if action == "_doc" and method in ("PUT", "POST") and n in (2, 3):
                return self.index_doc(name, parts[2] if n == 3 else None)
            if action == "_doc" and method == "GET" and n == 3:
                return self.get_doc(name, parts[2])
            if action == "_mapping" and method == "GET" and n == 2:
                return self._out({name: {"mappings": self.es.index(name).mapping_body()}}), 200
        raise EsError(405 if parts else 400, "illegal_argument_exception" if parts else "illegal_argument_exception",
                      f"Incorrect HTTP method for uri [/{'/'.join(parts)}] and method [{method}]")

    def _out(self, obj: Any) -> bytes:
        return dumps(apply_filter_path(obj, self.params.get("filter_path")))

    # -- cluster
    def root(self) -> bytes:
        return self._out({
            "name": "esproto-node", "cluster_name": "esproto", "cluster_uuid": "esproto-cluster-uuid",
            "version": {"number": self.es.version, "build_flavor": "default", "build_type": "docker",
                        "build_hash": "0" * 40, "build_date": "2024-08-05T10:05:34.233336849Z",
                        "build_snapshot": False, "lucene_version": "9.11.1",
                        "minimum_wire_compatibility_version": "7.17.0",
                        "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "You Know, for Search"})

    # -- indices
    def index_op(self, method: str, name: str) -> tuple[bytes, int]:
        es = self.es
        if method == "PUT":
            req = self.req or {}
            _validate_index_name(name)
            es.create_index(name, req.get("mappings"), req.get("settings"))
            return self._out({"acknowledged": True, "shards_acknowledged": True, "index": name}), 200
        if method == "HEAD":
            if not es.has_index(name):
                return b"", 404
            return b"", 200
        if method == "GET":
            idx = es.index(name)
            return self._out({name: {"aliases": {}, "mappings": idx.mapping_body(),
                                     "settings": {"index": {"number_of_shards": "1", "number_of_replicas": "1",
                                                            "uuid": idx.uuid, "provided_name": name}}}}), 200
        if method == "DELETE":
            es.index(name)
            with es._lock:
                del es._indices[name]
            return self._out({"acknowledged": True}), 200
        raise EsError(405, "illegal_argument_exception", f"Incorrect HTTP method for uri [/{name}] and method [{method}]")

    def index_doc(self, name: str, doc_id: str | None) -> tuple[bytes, int]:
        es = self.es
        with es._lock:
            if name not in es._indices:
                _validate_index_name(name)
                es._indices[name] = _Index(name)
        idx = es.index(name)
        op = "create" if self.params.get("op_type") == "create" else "index"
        status, got_id, result = idx.index_document(self.body.strip(), self.req, doc_id, op)
        return self._out({"_index": name, "_id": got_id, "_version": 1, "result": result,
                          "_shards": {"total": 2, "successful": 1, "failed": 0},
                          "_seq_no": idx.n - 1, "_primary_term": 1}), status

    def get_doc(self, name: str, doc_id: str) -> tuple[bytes, int]:
        idx = self.es.index(name)
        slot = idx.slot_of(doc_id)
        if slot is None or not idx.live(slot):
            return self._out({"_index": name, "_id": doc_id, "found": False}), 404
        return self._out({"_index": name, "_id": doc_id, "_version": 1, "_seq_no": slot, "_primary_term": 1,
                          "found": True, "_source": _Raw(idx.source(slot))}), 200

    def bulk(self, default_index: str | None) -> bytes:
        es = self.es
        lines = self.body.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        else:
            raise _bad_request("The bulk request must be terminated by a newline [\\n]")
        items: list[dict] = []
        errors = False
        i = 0
        started = time.perf_counter()
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            if not line:
                continue
            try:
                action = orjson.loads(line)
                (op, meta), = action.items()
            except (orjson.JSONDecodeError, ValueError, AttributeError):
                raise _bad_request(f"Malformed action/metadata line [{i}], expected START_OBJECT but found [VALUE_STRING]",
                                   "illegal_argument_exception") from None
            if op not in ("index", "create", "delete", "update"):
                raise _bad_request(f"Malformed action/metadata line [{i}], expected field [create], [delete], "
                                   f"[index] or [update] but found [{op}]")
            name = meta.get("_index", default_index)
            if name is None:
                raise EsError(400, "action_request_validation_exception",
                              "Validation Failed: 1: index is missing;")
            doc_id = meta.get("_id")
            doc_id = None if doc_id is None else str(doc_id)
            raw = b""
            if op != "delete":
                if i >= len(lines):
                    raise _bad_request("The bulk request must be terminated by a newline [\\n]")
                raw = lines[i].strip()
                i += 1
            item: dict[str, Any] = {"_index": name, "_id": doc_id}
            try:
                if op == "update":
                    raise EsError(400, "illegal_argument_exception", "update is not supported by this test server")
                with es._lock:
                    if name not in es._indices:
                        _validate_index_name(name)
                        es._indices[name] = _Index(name)
                    idx = es._indices[name]
                if op == "delete":
                    found = doc_id is not None and idx.delete_document(doc_id)
                    item.update({"_version": 2, "result": "deleted" if found else "not_found",
                                 "_shards": {"total": 2, "successful": 1, "failed": 0},
                                 "_seq_no": idx.n, "_primary_term": 1, "status": 200 if found else 404})
                else:
                    try:
                        doc = orjson.loads(raw)
                    except orjson.JSONDecodeError as exc:
                        raise EsError(400, "document_parsing_exception", f"[1:1] failed to parse: {exc}") from None
                    status, got_id, result = idx.index_document(raw, doc, doc_id, op)
                    item.update({"_id": got_id, "_version": 1, "result": result,
                                 "_shards": {"total": 2, "successful": 1, "failed": 0},
                                 "_seq_no": idx.n - 1, "_primary_term": 1, "status": status})
            except EsError as exc:
                errors = True
                item.update({"status": exc.status,
                             "error": {"type": exc.type, "reason": exc.reason, **exc.extra}})
            items.append({op: item})
        took = int((time.perf_counter() - started) * 1000)
        return self._out({"errors": errors, "took": took, "items": items})

    def count(self, name: str) -> bytes:
        idx = self.es.index(name)
        snap = idx.snapshot()
        query = (self.req or {}).get("query")
        mask = idx.visible_mask(snap) & _QueryEval(idx, snap.n).eval(query)
        return self._out({"count": int(mask.sum()), "_shards": _shards()})

    # -- point in time
    def open_pit(self, name: str) -> bytes:
        if "keep_alive" not in self.params:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: [keep_alive] is not specified;")
        pit_id = self.es.open_pit(name, self.params["keep_alive"])
        return self._out({"id": pit_id, "_shards": _shards()})

    def close_pit(self) -> tuple[bytes, int]:
        pit_id = (self.req or {}).get("id")
        if not pit_id:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no pit ids specified;")
        ids = pit_id if isinstance(pit_id, list) else [pit_id]
        freed = sum(1 for i in ids if self.es.close_pit(i))
        return self._out({"succeeded": True, "num_freed": freed}), 200 if freed else 404

    # -- search
    def search(self, name: str | None) -> bytes:
        es, req, params = self.es, self.req or {}, self.params
        if not isinstance(req, dict):
            raise EsError(400, "parsing_exception", "request body must be an object")
        known = {"query", "size", "from", "sort", "search_after", "slice", "track_total_hits", "_source",
                 "pit", "timeout", "track_scores", "seq_no_primary_term", "version", "stored_fields",
                 "explain", "terminate_after", "profile"}
        unknown = set(req) - known
        if unknown:
            key = sorted(unknown)[0]
            raise EsError(400, "x_content_parse_exception", f"[1:2] [search] unknown field [{key}]",
                          root=[{"type": "x_content_parse_exception", "reason": f"[1:2] [search] unknown field [{key}]"}])
        for key in ("size", "from", "track_total_hits", "_source"):
            if key in params and key not in req:
                req[key] = _param_value(params[key])
        if "sort" in params and "sort" not in req:
            req["sort"] = params["sort"].split(",")
        pit_spec = req.get("pit")
        size = _nonneg_int(req.get("size", 10), "size")
        from_ = _nonneg_int(req.get("from", 0), "from")
        sort = _parse_sort(req.get("sort"), pit=pit_spec is not None)
        slice_ = _parse_slice(req.get("slice"))
        scroll = params.get("scroll")
        if pit_spec is not None:
            if name is not None:
                raise EsError(400, "action_request_validation_exception",
                              "Validation Failed: 1: [indices] cannot be used with point in time. "
                              "Do not specify any index with point in time.;")
            if scroll is not None:
                raise EsError(400, "action_request_validation_exception",
                              "Validation Failed: 1: using [point in time] is not allowed in a scroll context;")
            return self._pit_search(req, pit_spec, size, from_, sort, slice_)
        if name is None:
            raise _bad_request("this test server needs an index in the path or a point in time")
        idx = es.index(name)
        if from_ + size > 10000 and scroll is None:
            raise _query_error(f"Result window is too large, from + size must be less than or equal to: [10000] "
                               f"but was [{from_ + size}]. See the scroll api for a more efficient way to request "
                               f"large data sets.", "illegal_argument_exception", name)
        if slice_ is not None and scroll is None:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: [slice] can only be used with [scroll] or [point-in-time] requests;")
        snap = idx.snapshot()
        slots, keys = idx.matches(snap, req.get("query"), sort, slice_)
        start = from_ + self._after_position(req, slots, keys, sort)
        if scroll is not None:
            ka = parse_time_value(scroll, "scroll")
            with es._lock:
                num = next(es._ctx_counter)
                es._scrolls[num] = _Scroll(num, idx, slots, keys, start + size, size, req, ka, es.now() + ka,
                                           (idx.name, snap, orjson.dumps(req, option=orjson.OPT_SORT_KEYS)))
            head = {"_scroll_id": es._encode_ctx("scroll", num, 0)}
            return self._page(head, idx, slots, keys, sort, start, size, req, ("scroll", num))
        return self._page({}, idx, slots, keys, sort, start, size, req, None)

    def _pit_search(self, req: dict, pit_spec: Any, size: int, from_: int, sort: list, slice_: Any) -> bytes:
        es = self.es
        if not isinstance(pit_spec, dict) or "id" not in pit_spec:
            raise EsError(400, "x_content_parse_exception", "[pit] failed to parse: missing [id]")
        num, gen = es._decode_ctx_gen("pit", pit_spec["id"]) or (None, 0)
        with es._lock:
            es._reap()
            pit = es._pits.get(num) if num is not None else None
            if pit is None:
                raise _context_missing(str(num))
            if gen < pit.generation:
                es.stale_pit_searches += 1  # valid, but not the newest id returned
            if pit.expire_after_pages is not None and pit.pages >= pit.expire_after_pages:
                del es._pits[pit.num]
                self.entry.fault = "pit_expired"
                es.faults.count("pit_expired")
                raise _context_missing(str(num))
            if "keep_alive" in pit_spec:
                pit.keep_alive_s = parse_time_value(pit_spec["keep_alive"])
            pit.expires_at = es.now() + pit.keep_alive_s
            pit.pages += 1
            pit.generation += 1
            new_id = es._encode_ctx("pit", pit.num, pit.generation)
        if from_ + size > 10000:
            raise _query_error(f"Result window is too large, from + size must be less than or equal to: [10000] "
                               f"but was [{from_ + size}].", "illegal_argument_exception", pit.index.name)
        slots, keys = pit.index.matches(pit.snap, req.get("query"), sort, slice_)
        start = from_ + self._after_position(req, slots, keys, sort)
        return self._page({"pit_id": new_id}, pit.index, slots, keys, sort, start, size, req, ("pit", new_id))

    def _after_position(self, req: dict, slots: np.ndarray, keys: list[np.ndarray], sort: list) -> int:
        after = req.get("search_after")
        if after is None:
            return 0
        if not isinstance(after, list):
            raise EsError(400, "parsing_exception", "[search_after] failed to parse")
        if len(after) != len(sort):
            raise _bad_request(f"search_after has {len(after)} value(s) but sort has {len(sort)}.")
        target: list[Any] = []
        for value, (fname, desc) in zip(after, sort):
            if isinstance(value, bool) or value is None:
                raise _bad_request(f"search_after value [{value}] is not valid for [{fname}]")
            if isinstance(value, str):
                parsed = parse_date(value)
                if parsed is None:
                    raise _bad_request(f"Failed to parse search_after value for field [{fname}].")
                value = parsed
            target.append(-value if desc else value)

        class _Keys:
            def __len__(self) -> int:
                return len(slots)

            def __getitem__(self, i: int) -> list[Any]:
                return [(-k[i] if d else k[i]) for k, (_, d) in zip(keys, sort)]

        return bisect.bisect_right(_Keys(), target)

    def _page(self, head: dict, idx: _Index, slots: np.ndarray, keys: list[np.ndarray], sort: list,
              start: int, size: int, req: dict, ctx: Any) -> bytes:
        es = self.es
        filter_path = self.params.get("filter_path")
        cache_key = None
        placeholder = "\x00CTX\x00"
        if es.cache_pages and ctx is not None:
            body_key = {k: v for k, v in req.items() if k not in ("pit", "search_after")}
            cache_key = (idx.name, id(slots), orjson.dumps(body_key, option=orjson.OPT_SORT_KEYS),
                         filter_path, start, size)
            cached = es._page_cache.get(cache_key)
            if cached is not None and cached[0] is slots:
                return cached[1].replace(b'"\\u0000CTX\\u0000"', b'"' + str(ctx[1] if ctx[0] == "pit" else
                                                                                 head["_scroll_id"]).encode() + b'"')
        stop = min(start + size, len(slots))
        enabled, includes, excludes = _source_filter(req.get("_source"))
        partial = es.faults.draw_partial_failure()
        hits = []
        scored = not sort
        for pos in range(start, stop):
            slot = int(slots[pos])
            hit: dict[str, Any] = {"_index": idx.name, "_id": idx.doc_id(slot), "_score": 1.0 if scored else None}
            if enabled:
                hit["_source"] = _filter_source(idx.source(slot), includes, excludes)
            if not scored:
                hit["sort"] = [k[pos].item() for k in keys]
            hits.append(hit)
        resp: dict[str, Any] = dict(head)
        if cache_key is not None:
            for key in ("pit_id", "_scroll_id"):
                if key in resp:
                    resp[key] = placeholder
        shards = _shards()
        if partial:
            es.faults.count("partial")
            shards = {"total": 2, "successful": 1, "skipped": 0, "failed": 1,
                      "failures": [{"shard": 1, "index": idx.name, "node": "esproto-node",
                                    "reason": {"type": "node_not_connected_exception",
                                               "reason": "[esproto-node-2] Node not connected"}}]}
        resp.update({"took": 1, "timed_out": False, "_shards": shards})
        hits_obj: dict[str, Any] = {}
        tth = req.get("track_total_hits", 10000)
        if tth is not False:
            limit = None if tth is True else int(tth)
            total = len(slots)
            if limit is not None and total > limit:
                hits_obj["total"] = {"value": limit, "relation": "gte"}
            else:
                hits_obj["total"] = {"value": total, "relation": "eq"}
        hits_obj["max_score"] = (1.0 if hits else None) if scored else None
        hits_obj["hits"] = hits
        resp["hits"] = hits_obj
        filtered = apply_filter_path(resp, filter_path)
        if filter_path and not hits and es.empty_filter_path_drops_pit_id and isinstance(filtered, dict):
            filtered.pop("pit_id", None)  # ES-WIRE.md: with zero hits filter_path yields {}
        out = dumps(filtered)
        if cache_key is not None:
            es._page_cache[cache_key] = (slots, out)
            return out.replace(b'"\\u0000CTX\\u0000"', b'"' + str(ctx[1] if ctx[0] == "pit" else
                                                                     head["_scroll_id"]).encode() + b'"')
        return out

    # -- scroll
    def scroll(self, scroll_id_in_path: str | None) -> bytes:
        es, req = self.es, self.req or {}
        scroll_id = req.get("scroll_id") or self.params.get("scroll_id") or scroll_id_in_path
        num = es._decode_ctx("scroll", scroll_id)
        with es._lock:
            es._reap()
            ctx = es._scrolls.get(num) if num is not None else None
            if ctx is None:
                raise _context_missing(str(num))
            keep = req.get("scroll") or self.params.get("scroll")
            if keep:
                ctx.keep_alive_s = parse_time_value(keep, "scroll")
            ctx.expires_at = es.now() + ctx.keep_alive_s
            start = ctx.pos
            ctx.pos += ctx.size
        sort = _parse_sort(ctx.body.get("sort"), pit=False)
        return self._page({"_scroll_id": scroll_id}, ctx.index, ctx.slots, ctx.keys, sort, start, ctx.size,
                          ctx.body, ("scroll", num))

    def clear_scroll(self, scroll_id_in_path: str | None) -> tuple[bytes, int]:
        es, req = self.es, self.req or {}
        ids = req.get("scroll_id") or scroll_id_in_path or []
        ids = ids if isinstance(ids, list) else [ids]
        freed = 0
        with es._lock:
            for sid in ids:
                num = es._decode_ctx("scroll", sid)
                if num is not None and es._scrolls.pop(num, None) is not None:
                    freed += 1
        return self._out({"succeeded": True, "num_freed": freed}), 200 if freed or not ids else 404


def _shards() -> dict:
    return {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


def _validate_index_name(name: str) -> None:
    if name != name.lower() or name.startswith(("-", "_", "+")) or any(c in name for c in '\\/*?"<>| ,#:'):
        raise EsError(400, "invalid_index_name_exception",
                      f"Invalid index name [{name}], must be lowercase", extra={"index": name})


def _param_value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return text.split(",")


def _nonneg_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad_request(f"[{what}] parameter cannot be negative, found [{value}]")
    return value


def _parse_sort(spec: Any, *, pit: bool) -> list[tuple[str, bool]]:
    if spec is None:
        return [("_shard_doc", False)] if pit else []
    items = spec if isinstance(spec, list) else [spec]
    out: list[tuple[str, bool]] = []
    for item in items:
        if isinstance(item, str):
            fname, _, order = item.partition(":")
            out.append((fname, order == "desc"))
        elif isinstance(item, dict) and len(item) == 1:
            (fname, opts), = item.items()
            order = opts if isinstance(opts, str) else (opts or {}).get("order", "asc")
            if order not in ("asc", "desc"):
                raise _bad_request(f"Unknown SortOrder [{order}]")
            out.append((fname, order == "desc"))
        else:
            raise EsError(400, "parsing_exception", f"[sort] malformed: {item!r}")
    if pit and not any(f == "_shard_doc" for f, _ in out):
        out.append(("_shard_doc", False))  # ES adds the tiebreaker to every PIT search
    return out


def _parse_slice(spec: Any) -> tuple[int, int] | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or "id" not in spec or "max" not in spec:
        raise EsError(400, "x_content_parse_exception", "[slice] requires [id] and [max]")
    sid, smax = spec["id"], spec["max"]
    if not isinstance(smax, int) or smax <= 1:
        raise _bad_request("max must be greater than 1")
    if not isinstance(sid, int) or sid < 0 or sid >= smax:
        raise _bad_request("id must be greater than or equal to 0 and lower than max" if sid != smax else
                           "max must be greater than id")
    return sid, smax
