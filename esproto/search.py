"""Search endpoints: point in time, search (PIT/search_after, slices, from/size) and scroll."""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import orjson

from .aggs import parse_aggs, run_aggs
from .contexts import _Scroll
from .dates import parse_date, parse_time_value
from .errors import EsError, _bad_request, _context_missing, _query_error
from .index import _Index
from .params import _nonneg_int, _param_value, _parse_slice, _parse_sort, _shards
from .render import _filter_source, _source_filter, apply_filter_path, dumps


class _SearchRoutes:
    """Search, PIT and scroll endpoints, mixed into the router."""

    # -- point in time
    def open_pit(self, name: str) -> bytes:
        if "keep_alive" not in self.params:
            raise EsError(
                400, "action_request_validation_exception", "Validation Failed: 1: [keep_alive] is not specified;"
            )
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
        known = {
            "query",
            "size",
            "from",
            "sort",
            "search_after",
            "slice",
            "track_total_hits",
            "_source",
            "pit",
            "timeout",
            "track_scores",
            "seq_no_primary_term",
            "version",
            "stored_fields",
            "explain",
            "terminate_after",
            "profile",
            "aggs",
            "aggregations",
        }
        unknown = set(req) - known
        if unknown:
            key = sorted(unknown)[0]
            raise EsError(
                400,
                "x_content_parse_exception",
                f"[1:2] [search] unknown field [{key}]",
                root=[{"type": "x_content_parse_exception", "reason": f"[1:2] [search] unknown field [{key}]"}],
            )
        for key in ("size", "from", "track_total_hits", "_source"):
            if key in params and key not in req:
                req[key] = _param_value(params[key])
        if "sort" in params and "sort" not in req:
            req["sort"] = params["sort"].split(",")
        if "aggs" in req and "aggregations" in req:
            raise EsError(400, "parsing_exception", "Found two aggregation definitions: [aggs] and [aggregations]")
        agg_spec = req.get("aggs", req.get("aggregations"))
        self.aggs = parse_aggs(agg_spec) if agg_spec is not None else []
        pit_spec = req.get("pit")
        size = _nonneg_int(req.get("size", 10), "size")
        from_ = _nonneg_int(req.get("from", 0), "from")
        sort = _parse_sort(req.get("sort"), pit=pit_spec is not None)
        slice_ = _parse_slice(req.get("slice"))
        scroll = params.get("scroll")
        if pit_spec is not None:
            if name is not None:
                raise EsError(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: [indices] cannot be used with point in time. "
                    "Do not specify any index with point in time.;",
                )
            if scroll is not None:
                raise EsError(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: using [point in time] is not allowed in a scroll context;",
                )
            return self._pit_search(req, pit_spec, size, from_, sort, slice_)
        if name is None:
            raise _bad_request("this test server needs an index in the path or a point in time")
        idx = es.index(name)
        if from_ + size > 10000 and scroll is None:
            raise _query_error(
                f"Result window is too large, from + size must be less than or equal to: [10000] "
                f"but was [{from_ + size}]. See the scroll api for a more efficient way to request "
                f"large data sets.",
                "illegal_argument_exception",
                name,
            )
        if slice_ is not None and scroll is None:
            raise EsError(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: [slice] can only be used with [scroll] or [point-in-time] requests;",
            )
        snap = idx.snapshot()
        slots, keys = idx.matches(snap, req.get("query"), sort, slice_)
        start = from_ + self._after_position(req, slots, keys, sort)
        if scroll is not None:
            ka = parse_time_value(scroll, "scroll")
            with es._lock:
                num = next(es._ctx_counter)
                es._scrolls[num] = _Scroll(
                    num,
                    idx,
                    slots,
                    keys,
                    start + size,
                    size,
                    req,
                    ka,
                    es.now() + ka,
                    (idx.name, snap, orjson.dumps(req, option=orjson.OPT_SORT_KEYS)),
                )
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
            raise _query_error(
                f"Result window is too large, from + size must be less than or equal to: [10000] "
                f"but was [{from_ + size}].",
                "illegal_argument_exception",
                pit.index.name,
            )
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

    def _page(
        self,
        head: dict,
        idx: _Index,
        slots: np.ndarray,
        keys: list[np.ndarray],
        sort: list,
        start: int,
        size: int,
        req: dict,
        ctx: Any,
    ) -> bytes:
        es = self.es
        filter_path = self.params.get("filter_path")
        cache_key = None
        placeholder = "\x00CTX\x00"
        if es.cache_pages and ctx is not None:
            body_key = {k: v for k, v in req.items() if k not in ("pit", "search_after")}
            cache_key = (
                idx.name,
                id(slots),
                orjson.dumps(body_key, option=orjson.OPT_SORT_KEYS),
                filter_path,
                start,
                size,
            )
            cached = es._page_cache.get(cache_key)
            if cached is not None and cached[0] is slots:
                es.count_sent(cached[2], bool(self.aggs))
                return cached[1].replace(
                    b'"\\u0000CTX\\u0000"',
                    b'"' + str(ctx[1] if ctx[0] == "pit" else head["_scroll_id"]).encode() + b'"',
                )
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
            shards = {
                "total": 2,
                "successful": 1,
                "skipped": 0,
                "failed": 1,
                "failures": [
                    {
                        "shard": 1,
                        "index": idx.name,
                        "node": "esproto-node",
                        "reason": {
                            "type": "node_not_connected_exception",
                            "reason": "[esproto-node-2] Node not connected",
                        },
                    }
                ],
            }
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
        if self.aggs:
            resp["aggregations"] = run_aggs(self.aggs, idx, slots, self.params.get("typed_keys") in ("", "true"))
        filtered = apply_filter_path(resp, filter_path)
        sent = len(hits) if not filter_path else len(((filtered or {}).get("hits") or {}).get("hits") or [])
        es.count_sent(sent, bool(self.aggs))
        if filter_path and not hits and es.empty_filter_path_drops_pit_id and isinstance(filtered, dict):
            filtered.pop("pit_id", None)  # docs/elasticsearch.md: with zero hits filter_path yields {}
        out = dumps(filtered)
        if cache_key is not None:
            es._page_cache[cache_key] = (slots, out, sent)
            return out.replace(
                b'"\\u0000CTX\\u0000"', b'"' + str(ctx[1] if ctx[0] == "pit" else head["_scroll_id"]).encode() + b'"'
            )
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
        return self._page(
            {"_scroll_id": scroll_id}, ctx.index, ctx.slots, ctx.keys, sort, start, ctx.size, ctx.body, ("scroll", num)
        )

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
