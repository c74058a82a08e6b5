"""Routing: cluster, index, document, bulk and count endpoints."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from .errors import EsError, _bad_request
from .faults import LoggedRequest
from .index import _Index
from .params import _shards, _validate_index_name
from .query import _QueryEval
from .render import _Raw, apply_filter_path, dumps
from .search import _SearchRoutes

if TYPE_CHECKING:
    from .server import EsProtocolServer


class _Router(_SearchRoutes):
    def __init__(self, es: EsProtocolServer, entry: LoggedRequest, req: Any, body: bytes) -> None:
        self.es, self.entry, self.req, self.body = es, entry, req, body
        self.params = entry.query
        self.aggs: list = []  # the search's parsed aggregations (search.py)

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
            if action == "_doc" and method == "DELETE" and n == 3:
                return self.delete_doc(name, parts[2])
            if action == "_delete_by_query" and n == 2 and method == "POST":
                return self.delete_by_query(name), 200
            if action == "_mapping" and method == "GET" and n == 2:
                return self._out({name: {"mappings": self.es.index(name).mapping_body()}}), 200
        raise EsError(
            405 if parts else 400,
            "illegal_argument_exception" if parts else "illegal_argument_exception",
            f"Incorrect HTTP method for uri [/{'/'.join(parts)}] and method [{method}]",
        )

    def _out(self, obj: Any) -> bytes:
        return dumps(apply_filter_path(obj, self.params.get("filter_path")))

    # -- cluster
    def root(self) -> bytes:
        return self._out(
            {
                "name": "esproto-node",
                "cluster_name": "esproto",
                "cluster_uuid": "esproto-cluster-uuid",
                "version": {
                    "number": self.es.version,
                    "build_flavor": "default",
                    "build_type": "docker",
                    "build_hash": "0" * 40,
                    "build_date": "2024-08-05T10:05:34.233336849Z",
                    "build_snapshot": False,
                    "lucene_version": "9.11.1",
                    "minimum_wire_compatibility_version": "7.17.0",
                    "minimum_index_compatibility_version": "7.0.0",
                },
                "tagline": "You Know, for Search",
            }
        )

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
            return self._out(
                {
                    name: {
                        "aliases": {},
                        "mappings": idx.mapping_body(),
                        "settings": {
                            "index": {
                                "number_of_shards": "1",
                                "number_of_replicas": "1",
                                "uuid": idx.uuid,
                                "provided_name": name,
                            }
                        },
                    }
                }
            ), 200
        if method == "DELETE":
            es.index(name)
            with es._lock:
                del es._indices[name]
            return self._out({"acknowledged": True}), 200
        raise EsError(
            405, "illegal_argument_exception", f"Incorrect HTTP method for uri [/{name}] and method [{method}]"
        )

    def index_doc(self, name: str, doc_id: str | None) -> tuple[bytes, int]:
        es = self.es
        with es._lock:
            if name not in es._indices:
                _validate_index_name(name)
                es._indices[name] = _Index(name)
        idx = es.index(name)
        op = "create" if self.params.get("op_type") == "create" else "index"
        status, got_id, result = idx.index_document(self.body.strip(), self.req, doc_id, op)
        return self._out(
            {
                "_index": name,
                "_id": got_id,
                "_version": 1,
                "result": result,
                "_shards": {"total": 2, "successful": 1, "failed": 0},
                "_seq_no": idx.n - 1,
                "_primary_term": 1,
            }
        ), status

    def get_doc(self, name: str, doc_id: str) -> tuple[bytes, int]:
        idx = self.es.index(name)
        slot = idx.slot_of(doc_id)
        if slot is None or not idx.live(slot):
            return self._out({"_index": name, "_id": doc_id, "found": False}), 404
        return self._out(
            {
                "_index": name,
                "_id": doc_id,
                "_version": 1,
                "_seq_no": slot,
                "_primary_term": 1,
                "found": True,
                "_source": _Raw(idx.source(slot)),
            }
        ), 200

    def delete_doc(self, name: str, doc_id: str) -> tuple[bytes, int]:
        idx = self.es.index(name)
        found = idx.delete_document(doc_id)
        return self._out(
            {
                "_index": name,
                "_id": doc_id,
                "_version": 2 if found else 1,
                "result": "deleted" if found else "not_found",
                "_shards": {"total": 2, "successful": 1, "failed": 0},
                "_seq_no": idx.n,
                "_primary_term": 1,
            }
        ), 200 if found else 404

    def delete_by_query(self, name: str) -> bytes:
        idx = self.es.index(name)
        req = self.req if isinstance(self.req, dict) else {}
        if "query" not in req:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: query is missing;")
        started = time.perf_counter()
        with idx.lock:
            snap = idx.snapshot()
            mask = idx.visible_mask(snap) & _QueryEval(idx, snap.n).eval(req["query"])
            slots = np.flatnonzero(mask)
            for slot in slots.tolist():
                idx.delete_document(idx.doc_id(slot))
        took = int((time.perf_counter() - started) * 1000)
        return self._out(
            {
                "took": took,
                "timed_out": False,
                "total": len(slots),
                "deleted": len(slots),
                "batches": 1 if len(slots) else 0,
                "version_conflicts": 0,
                "noops": 0,
                "retries": {"bulk": 0, "search": 0},
                "throttled_millis": 0,
                "requests_per_second": -1.0,
                "throttled_until_millis": 0,
                "failures": [],
            }
        )

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
                ((op, meta),) = action.items()
            except (orjson.JSONDecodeError, ValueError, AttributeError):
                raise _bad_request(
                    f"Malformed action/metadata line [{i}], expected START_OBJECT but found [VALUE_STRING]",
                    "illegal_argument_exception",
                ) from None
            if op not in ("index", "create", "delete", "update"):
                raise _bad_request(
                    f"Malformed action/metadata line [{i}], expected field [create], [delete], "
                    f"[index] or [update] but found [{op}]"
                )
            name = meta.get("_index", default_index)
            if name is None:
                raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
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
                    item.update(
                        {
                            "_version": 2,
                            "result": "deleted" if found else "not_found",
                            "_shards": {"total": 2, "successful": 1, "failed": 0},
                            "_seq_no": idx.n,
                            "_primary_term": 1,
                            "status": 200 if found else 404,
                        }
                    )
                else:
                    try:
                        doc = orjson.loads(raw)
                    except orjson.JSONDecodeError as exc:
                        raise EsError(400, "document_parsing_exception", f"[1:1] failed to parse: {exc}") from None
                    status, got_id, result = idx.index_document(raw, doc, doc_id, op)
                    item.update(
                        {
                            "_id": got_id,
                            "_version": 1,
                            "result": result,
                            "_shards": {"total": 2, "successful": 1, "failed": 0},
                            "_seq_no": idx.n - 1,
                            "_primary_term": 1,
                            "status": status,
                        }
                    )
                if self.params.get("refresh") in ("", "true"):
                    item["forced_refresh"] = True  # refresh=true; documents are visible at once anyway
            except EsError as exc:
                errors = True
                item.update({"status": exc.status, "error": {"type": exc.type, "reason": exc.reason, **exc.extra}})
            items.append({op: item})
        took = int((time.perf_counter() - started) * 1000)
        return self._out({"errors": errors, "took": took, "items": items})

    def count(self, name: str) -> bytes:
        idx = self.es.index(name)
        snap = idx.snapshot()
        query = (self.req or {}).get("query")
        mask = idx.visible_mask(snap) & _QueryEval(idx, snap.n).eval(query)
        return self._out({"count": int(mask.sum()), "_shards": _shards()})
