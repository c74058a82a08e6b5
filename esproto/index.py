"""Index storage: raw sources plus typed columns, snapshots, mappings."""

from __future__ import annotations

import base64
import random
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .dates import _MISSING_DATE, _SHARD_DOC_BASE, _SORT_MISSING, parse_date
from .errors import EsError, _query_error
from .query import _QueryEval

_DATE_TYPES = {"date", "date_nanos"}
_KEYWORD_TYPES = {"keyword", "text", "constant_keyword", "wildcard", "match_only_text", "boolean"}
_NUMBER_TYPES = {
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
}


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

    def __init__(
        self, name: str, mappings: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> None:
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
        return bytes(self.buf[self.offsets[slot] : self.offsets[slot + 1]])

    def live(self, slot: int) -> bool:
        return slot < self.n and slot not in self.tombstone_seq

    def index_document(self, raw: bytes, doc: Any, doc_id: str | None, op: str) -> tuple[int, str, str]:
        """Store one document; returns (status, id, result). Raises EsError for a refused one."""
        if not isinstance(doc, dict):
            raise EsError(400, "document_parsing_exception", "[1:1] failed to parse: the document is not a JSON object")
        with self.lock:
            old = self.slot_of(doc_id) if doc_id is not None else None
            if old is not None and not self.live(old):
                old = None
            if old is not None and op == "create":
                raise EsError(
                    409,
                    "version_conflict_engine_exception",
                    f"[{doc_id}]: version conflict, document already exists (current version [1])",
                    extra={"index": self.name, "shard": "0"},
                )
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
                        400,
                        "document_parsing_exception",
                        f"[1:2] failed to parse field [{fname}] of type [{self.field_types[fname]}] "
                        f"in document with id '{doc_id or slot}'. Preview of field's value: '{preview}'",
                        extra={
                            "caused_by": {
                                "type": "illegal_argument_exception",
                                "reason": f"failed to parse [{preview}]",
                            }
                        },
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

    def matches(
        self, snap: _Snapshot, query: Any, sort: list[tuple[str, bool]], slice_: tuple[int, int] | None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
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
                        raise _query_error(f"No mapping found for [{fname}] in order to sort on", index=self.name)
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
