"""Aggregations: ``composite`` with ``terms`` and ``date_histogram`` sources, paged by ``after``.

What real Elasticsearch answers, and this server too:

* ``{"aggregations": {name: {"after_key": {...}, "buckets": [{"key": {...}, "doc_count": n}]}}}``;
  ``after_key`` is the last bucket's key and is absent when the page has no bucket.
* Buckets are ordered by the sources in order, each ascending unless ``"order": "desc"``;
  documents missing a source's field are left out unless ``"missing_bucket": true`` (then their
  key is ``null``, first when ascending and last when descending, or as ``missing_order`` says).
* A ``date_histogram`` key is the bucket start in epoch ms (``calendar_interval`` minute, hour,
  day or week, or any ``fixed_interval``; ``time_zone`` UTC or a fixed offset); a ``terms`` key
  is the string of a keyword, the number of a numeric field, the epoch ms of a date.
* An unknown aggregation type is a 400 ``parsing_exception`` ("Unknown aggregation type"), as in
  ES; a real ES aggregation this server does not implement is a 400 that says so.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from .dates import _MISSING_DATE, parse_date, parse_time_value
from .errors import EsError, _bad_request, _query_error

if TYPE_CHECKING:
    from .index import _Index

_MAX_BUCKETS = 65_536  # search.max_buckets
_DAY_MS = 86_400_000
_CALENDAR_MS = {
    "minute": 60_000,
    "1m": 60_000,
    "hour": 3_600_000,
    "1h": 3_600_000,
    "day": _DAY_MS,
    "1d": _DAY_MS,
    "week": 7 * _DAY_MS,
    "1w": 7 * _DAY_MS,
}
_CALENDAR_UNSUPPORTED = {"month", "1M", "quarter", "1q", "year", "1y"}
_UTC_NAMES = {"UTC", "Z", "GMT", "Etc/UTC", "Etc/GMT", "UCT", "Zulu"}
_INT_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
# every aggregation type ES 8 parses (an unknown name gets ES's own parsing error)
_ES_AGGS = {
    "adjacency_matrix",
    "auto_date_histogram",
    "avg",
    "boxplot",
    "cardinality",
    "categorize_text",
    "children",
    "composite",
    "date_histogram",
    "date_range",
    "diversified_sampler",
    "extended_stats",
    "filter",
    "filters",
    "frequent_item_sets",
    "geo_bounds",
    "geo_centroid",
    "geo_distance",
    "geo_line",
    "geohash_grid",
    "geohex_grid",
    "geotile_grid",
    "global",
    "histogram",
    "ip_prefix",
    "ip_range",
    "matrix_stats",
    "max",
    "median_absolute_deviation",
    "min",
    "missing",
    "multi_terms",
    "nested",
    "parent",
    "percentile_ranks",
    "percentiles",
    "random_sampler",
    "range",
    "rare_terms",
    "reverse_nested",
    "sampler",
    "scripted_metric",
    "significant_terms",
    "significant_text",
    "stats",
    "string_stats",
    "sum",
    "t_test",
    "terms",
    "time_series",
    "top_hits",
    "top_metrics",
    "value_count",
    "variable_width_histogram",
    "weighted_avg",
}


@dataclass(frozen=True)
class _Source:
    name: str
    kind: str  # "terms" | "date_histogram"
    field: str
    desc: bool
    missing_bucket: bool
    missing_order: str  # "default" | "first" | "last"
    interval_ms: int = 0
    week: bool = False  # calendar weeks start on Monday
    offset_ms: int = 0  # the time zone's fixed offset


@dataclass(frozen=True)
class _Composite:
    name: str
    sources: tuple[_Source, ...]
    size: int
    after: dict | None


def parse_aggs(spec: Any) -> list[_Composite]:
    """The request's ``aggs`` (or ``aggregations``), validated; raises :class:`EsError` as ES does."""
    if not isinstance(spec, dict):
        raise _parsing("Expected [START_OBJECT] under [aggs], but got a different token")
    out = []
    for name, body in spec.items():
        if not isinstance(body, dict) or not body:
            raise _parsing(f"Expected [START_OBJECT] under [{name}], but got a different token")
        kinds = [k for k in body if k not in ("meta",)]
        if "aggs" in kinds or "aggregations" in kinds:
            raise _bad_request(f"sub-aggregations of [{name}] are not supported by this test server")
        if len(kinds) != 1:
            raise _parsing(f"Found two aggregation type definitions in [{name}]: [{kinds[0]}] and [{kinds[1]}]")
        kind = kinds[0]
        if kind not in _ES_AGGS:
            raise EsError(
                400,
                "parsing_exception",
                f"Unknown aggregation type [{kind}]",
                root=[
                    {"type": "parsing_exception", "reason": f"Unknown aggregation type [{kind}]", "line": 1, "col": 1}
                ],
                extra={
                    "line": 1,
                    "col": 1,
                    "caused_by": {
                        "type": "named_object_not_found_exception",
                        "reason": f"[1:1] unknown field [{kind}]",
                    },
                },
            )
        if kind != "composite":
            raise _bad_request(f"aggregation [{kind}] is not supported by this test server (only [composite])")
        out.append(_parse_composite(name, body[kind]))
    return out


def _parse_composite(name: str, spec: Any) -> _Composite:
    if not isinstance(spec, dict):
        raise _parsing("[composite] failed to parse field [composite]")
    unknown = set(spec) - {"sources", "size", "after"}
    if unknown:
        raise _x_content(f"[composite] unknown field [{sorted(unknown)[0]}]")
    sources_spec = spec.get("sources")
    if not isinstance(sources_spec, list) or not sources_spec:
        raise _x_content(
            "Required [sources]" if sources_spec is None else "[composite] failed to parse field [sources]"
        )
    sources = []
    for item in sources_spec:
        if not isinstance(item, dict) or len(item) != 1:
            raise _x_content("[composite] failed to parse field [sources]")
        ((src_name, src_body),) = item.items()
        sources.append(_parse_source(src_name, src_body))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _bad_request(f"Composite source names must be unique, found duplicates: [{dup}]")
    size = spec.get("size", 10)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise _bad_request(f"[size] must be greater than 0. Found [{size}] in [{name}]")
    after = spec.get("after")
    if after is not None:
        if not isinstance(after, dict):
            raise _x_content("[composite] failed to parse field [after]")
        if len(after) != len(sources):
            raise _bad_request(f"[after] has {len(after)} value(s) but [sources] has {len(sources)}")
        for s in sources:
            if s.name not in after:
                raise _bad_request(f"Missing value for [after.{s.name}]")
            if after[s.name] is None and not s.missing_bucket:
                raise _bad_request(
                    f"Cannot set missing after key in the composite aggregation [{name}] without setting missing_bucket"
                )
    return _Composite(name, tuple(sources), size, after)


def _parse_source(name: str, spec: Any) -> _Source:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise _x_content(f"[{name}] failed to parse composite source")
    ((kind, body),) = spec.items()
    if kind not in ("terms", "date_histogram"):
        if kind in ("histogram", "geotile_grid"):
            raise _bad_request(f"composite source [{kind}] is not supported by this test server")
        raise _parsing(f"Invalid source type: {kind}")
    if not isinstance(body, dict):
        raise _x_content(f"[{kind}] failed to parse")
    allowed = {"field", "order", "missing_bucket", "missing_order"}
    if kind == "date_histogram":
        allowed |= {"calendar_interval", "fixed_interval", "time_zone"}
    unsupported = {"script", "format", "offset", "value_type", "user_value_type"} & set(body)
    if unsupported:
        raise _bad_request(f"[{kind}] option [{sorted(unsupported)[0]}] is not supported by this test server")
    unknown = set(body) - allowed
    if unknown:
        raise _x_content(f"[{kind}] unknown field [{sorted(unknown)[0]}]")
    field = body.get("field")
    if not isinstance(field, str) or not field:
        raise _bad_request("Required one of fields [field, script], but none were specified.")
    order = body.get("order", "asc")
    if order not in ("asc", "desc"):
        raise _bad_request(f"Unknown order [{order}]")
    missing_order = body.get("missing_order", "default")
    if missing_order not in ("default", "first", "last"):
        raise _bad_request(f"Unknown MissingOrder key: {missing_order}")
    missing_bucket = bool(body.get("missing_bucket", False))
    if missing_order != "default" and not missing_bucket:
        raise _bad_request("missingOrder can only be set if missingBucket is true")
    src = dict(
        name=name,
        kind=kind,
        field=field,
        desc=order == "desc",
        missing_bucket=missing_bucket,
        missing_order=missing_order,
    )
    if kind == "terms":
        return _Source(**src)
    cal, fixed = body.get("calendar_interval"), body.get("fixed_interval")
    if cal is not None and fixed is not None:
        raise _bad_request("Cannot use [fixed_interval] with [calendar_interval] configuration option.")
    if cal is None and fixed is None:
        raise _bad_request("Invalid interval specified, must be non-null and non-empty")
    if cal is not None:
        if cal in _CALENDAR_UNSUPPORTED:
            raise _bad_request(f"calendar_interval [{cal}] is not supported by this test server")
        if cal not in _CALENDAR_MS:
            raise _bad_request(f"The supplied interval [{cal}] could not be parsed as a calendar interval.")
        interval, week = _CALENDAR_MS[cal], cal in ("week", "1w")
    else:
        seconds = parse_time_value(fixed, "date_histogram.fixedInterval")
        interval, week = int(round(seconds * 1000)), False
        if interval <= 0:
            raise _bad_request("Zero or negative time interval not supported")
    return _Source(**src, interval_ms=interval, week=week, offset_ms=_zone_offset_ms(body.get("time_zone", "UTC")))


def _zone_offset_ms(zone: Any) -> int:
    text = str(zone)
    if text in _UTC_NAMES:
        return 0
    got = parse_date("1970-01-01T00:00:00" + text) if text[:1] in "+-" else None
    if got is None:
        raise _bad_request(f"time_zone [{text}] is not supported by this test server (UTC or a fixed offset)")
    return -got


def run_aggs(aggs: list[_Composite], idx: _Index, slots: np.ndarray, typed_keys: bool) -> dict[str, Any]:
    """The ``aggregations`` object of a response over the matching ``slots``."""
    out = {}
    for agg in aggs:
        buckets, sortkeys, sorted_keys = _all_buckets(agg, idx, slots)
        start = 0
        if agg.after is not None:
            start = bisect.bisect_right(sortkeys, _after_sortkey(agg, sorted_keys, idx))
        page = buckets[start : start + agg.size]
        if len(page) > _MAX_BUCKETS:
            raise _query_error(
                f"Trying to create too many buckets. Must be less than or equal to: [{_MAX_BUCKETS}] "
                f"but this number of buckets was exceeded. This limit can be set by changing the "
                f"[search.max_buckets] cluster level setting.",
                "too_many_buckets_exception",
                idx.name,
            )
        body: dict[str, Any] = {}
        if page:
            body["after_key"] = dict(page[-1]["key"])
        body["buckets"] = page
        out[f"composite#{agg.name}" if typed_keys else agg.name] = body
    return out


def _all_buckets(agg: _Composite, idx: _Index, slots: np.ndarray) -> tuple[list[dict], list[tuple], list[list]]:
    """Every bucket in order, their sort keys, and each source's distinct keys ascending (cached)."""
    spec = orjson.dumps([s.__dict__ for s in agg.sources], option=orjson.OPT_SORT_KEYS)
    cache_key = ("composite", id(slots), len(slots), spec)
    with idx.lock:
        hit = idx.match_cache.get(cache_key)
        if hit is not None and hit[0] is slots:
            return hit[1]
    n = int(slots.max()) + 1 if len(slots) else 0
    ranks, keys_sorted, keep = [], [], np.ones(len(slots), dtype=bool)
    for src in agg.sources:
        values, missing, to_key = _source_values(src, idx, slots, n)
        uniq, inverse = _factorize(values[~missing], src.interval_ms or 1)
        keys = [to_key(v) for v in uniq.tolist()]
        order = sorted(range(len(keys)), key=keys.__getitem__)  # strings: code point order, as Lucene's bytes
        rank_of = np.empty(len(keys), dtype=np.int64)
        rank_of[np.array(order, dtype=np.int64)] = np.arange(len(keys), dtype=np.int64)
        r = np.full(len(slots), -1, dtype=np.int64)
        r[~missing] = rank_of[inverse] if len(keys) else r[~missing]
        if not src.missing_bucket:
            keep &= ~missing
        ranks.append(r)
        keys_sorted.append([keys[i] for i in order])
    combos, counts = _count_combinations([r[keep] for r in ranks], [len(ks) for ks in keys_sorted])
    rows = []
    for combo, count in zip(combos.tolist(), counts.tolist()):
        key, sortkey = {}, []
        for src, rank, ks in zip(agg.sources, combo, keys_sorted):
            key[src.name] = None if rank < 0 else ks[rank]
            sortkey.append(_rank_sortkey(src, rank if rank >= 0 else None, len(ks)))
        rows.append((tuple(sortkey), {"key": key, "doc_count": count}))
    rows.sort(key=lambda row: row[0])
    result = ([b for _, b in rows], [s for s, _ in rows], keys_sorted)
    with idx.lock:
        idx.match_cache[cache_key] = (slots, result)
        while len(idx.match_cache) > 16:
            idx.match_cache.popitem(last=False)
    return result


def _factorize(values: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values ascending, each value's index among them); linear time for a dense
    integer range (keyword codes, day starts), a sort otherwise."""
    if len(values) and values.dtype.kind in "iu":
        lo = int(values.min())
        span = (int(values.max()) - lo) // step + 1
        if span <= 4 * len(values) + 65_536:
            pos = (values - lo) // step
            present = np.bincount(pos, minlength=span) > 0
            index = np.cumsum(present) - 1
            return np.flatnonzero(present) * step + lo, index[pos]
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq, inverse.reshape(-1)


def _count_combinations(ranks: list[np.ndarray], cards: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of the rank columns (-1 = missing) ascending, and how often each occurs."""
    radix = [c + 1 for c in cards]
    if float(np.prod(np.array(radix, dtype=np.float64))) < 2.0**62:
        combined = np.zeros(len(ranks[0]), dtype=np.int64)
        for r, base in zip(ranks, radix):
            combined = combined * base + (r + 1)
        uniq, counts = np.unique(combined, return_counts=True)
        cols = []
        for base in reversed(radix):
            cols.append(uniq % base - 1)
            uniq = uniq // base
        return np.stack(cols[::-1], axis=1), counts
    return np.unique(np.stack(ranks, axis=1), axis=0, return_counts=True)


def _rank_sortkey(src: _Source, rank: float | None, n_keys: int) -> float:
    if rank is None:
        first = src.missing_order == "first" or (src.missing_order == "default" and not src.desc)
        return float("-inf") if first else float("inf")
    return -rank if src.desc else rank


def _after_sortkey(agg: _Composite, keys_sorted: list[list], idx: _Index) -> tuple:
    """Where the ``after`` key falls among the sorted buckets (between two ranks when it is no bucket)."""
    out = []
    for src, ks in zip(agg.sources, keys_sorted):
        value = agg.after[src.name] if agg.after else None
        if value is None:
            out.append(_rank_sortkey(src, None, len(ks)))
            continue
        value = _after_value(src, value, idx)
        try:
            pos = bisect.bisect_left(ks, value)
        except TypeError:
            raise _bad_request(f"Invalid value for [after.{src.name}]: [{value}]") from None
        rank = pos if pos < len(ks) and ks[pos] == value else pos - 0.5
        out.append(_rank_sortkey(src, rank, len(ks)))
    return tuple(out)


def _after_value(src: _Source, value: Any, idx: _Index) -> Any:
    col = _column(idx, src.field)
    if src.kind == "date_histogram" or (col is not None and col.kind == "date"):
        got = parse_date(value) if not isinstance(value, (dict, list)) else None
        if got is None:
            raise _bad_request(
                f"failed to parse date field [{value}] with format [strict_date_optional_time||epoch_millis]",
                "parse_exception",
            )
        return got
    if col is not None and col.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _bad_request(f"Invalid value for [after.{src.name}]: [{value}]")
        try:
            number = float(value)
        except ValueError:
            raise _bad_request(f'For input string: "{value}"', "number_format_exception") from None
        return int(number) if idx.field_types.get(src.field) in _INT_TYPES else number
    if isinstance(value, (dict, list)):
        raise _bad_request(f"Invalid value for [after.{src.name}]: [{value}]")
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _column(idx: _Index, fname: str) -> Any:
    col = idx.columns.get(fname)
    if col is None and fname.endswith(".keyword"):
        base = idx.columns.get(fname[: -len(".keyword")])
        if base is not None and base.kind == "keyword":
            col = base
    return col


def _source_values(src: _Source, idx: _Index, slots: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """(a value per slot, which slots miss the field, value → bucket key)."""
    col = _column(idx, src.field)
    if col is None:  # unmapped: every document misses it
        return np.zeros(len(slots), dtype=np.int64), np.ones(len(slots), dtype=bool), int
    es_type = idx.field_types.get(src.field, "keyword")
    data = col.view(n)[slots]
    if src.kind == "terms":
        if es_type == "text" and not src.field.endswith(".keyword") and src.field in idx.columns:
            raise _query_error(
                f"Fielddata is disabled on [{src.field}] in [{idx.name}]. Text fields are not optimised for "
                f"operations that require per-document field data like aggregations and sorting, so these "
                f"operations are disabled by default. Please use a keyword field instead. Alternatively, set "
                f"fielddata=true on [{src.field}] in order to load field data by uninverting the inverted index. "
                f"Note that this can use significant memory.",
                "illegal_argument_exception",
                idx.name,
            )
        if col.kind == "keyword":
            values = col.values
            if es_type == "boolean":
                return data, data < 0, lambda c: values[c] == "true"
            return data, data < 0, lambda c: values[c]
        if col.kind == "date":
            return data, data == _MISSING_DATE, int
        return data, np.isnan(data), (int if es_type in _INT_TYPES else float)
    if col.kind == "keyword":
        raise _query_error(
            f"Field [{src.field}] of type [{es_type}] is not supported for aggregation [date_histogram]",
            "illegal_argument_exception",
            idx.name,
        )
    if col.kind == "number":
        missing = np.isnan(data)
        data = np.where(missing, 0, np.floor(np.nan_to_num(data))).astype(np.int64)
    else:
        missing = data == _MISSING_DATE
    shift = src.offset_ms + (3 * _DAY_MS if src.week else 0)  # 1970-01-05 was a Monday: 4 days = -3 mod 7
    start = (data + shift) // src.interval_ms * src.interval_ms - shift  # floor division: before 1970 too
    return start, missing, int


def _parsing(reason: str) -> EsError:
    return EsError(
        400,
        "parsing_exception",
        reason,
        root=[{"type": "parsing_exception", "reason": reason, "line": 1, "col": 1}],
        extra={"line": 1, "col": 1},
    )


def _x_content(reason: str) -> EsError:
    reason = f"[1:1] {reason}"
    return EsError(
        400, "x_content_parse_exception", reason, root=[{"type": "x_content_parse_exception", "reason": reason}]
    )
