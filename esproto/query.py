"""Query evaluation over an index's typed columns (bool, term, terms, range, exists, ids)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .dates import _MISSING_DATE, parse_date
from .errors import EsError, _query_error

if TYPE_CHECKING:
    from .index import _Column, _Index


class _QueryEval:
    def __init__(self, index: _Index, n: int) -> None:
        self.index, self.n = index, n

    def eval(self, query: Any) -> np.ndarray:
        if query is None:
            return np.ones(self.n, dtype=bool)
        if not isinstance(query, dict) or len(query) != 1:
            raise EsError(
                400,
                "parsing_exception",
                "[_na] query malformed, must start with start_object"
                if not isinstance(query, dict)
                else "[_na] query malformed, no start_object after query name",
            )
        ((kind, spec),) = query.items()
        method = getattr(self, "_q_" + kind, None)
        if method is None:
            raise EsError(
                400,
                "parsing_exception",
                f"unknown query [{kind}]",
                root=[{"type": "parsing_exception", "reason": f"unknown query [{kind}]", "line": 1, "col": 1}],
            )
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
                raise _query_error(
                    f"failed to create query: {qname} value [{v}] is not valid for field [{fname}]",
                    index=self.index.name,
                )
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
            raise _query_error(
                f"The number of terms [{len(values)}] used in the Terms Query request has exceeded "
                "the allowed maximum of [65536].",
                "illegal_argument_exception",
                self.index.name,
            )
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
        allowed = {
            "gte",
            "gt",
            "lte",
            "lt",
            "from",
            "to",
            "include_lower",
            "include_upper",
            "format",
            "time_zone",
            "boost",
            "relation",
            "_name",
        }
        unknown = set(bounds) - allowed
        if unknown:
            raise EsError(400, "parsing_exception", f"[range] query does not support [{sorted(unknown)[0]}]")
        col = self._column(fname)
        if col is None:
            return np.zeros(self.n, dtype=bool)
        if col.kind == "keyword":
            raise _query_error(
                f"range queries on keyword field [{fname}] are not supported by this test server", index=self.index.name
            )
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
                        "parse_exception",
                        self.index.name,
                    )
            else:
                value = _to_float(raw)
                if value is None:
                    raise _query_error(f'For input string: "{raw}"', "number_format_exception", self.index.name)
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
