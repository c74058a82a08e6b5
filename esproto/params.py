"""Request parameter parsing shared by the routes: sort, slice, numbers, index names."""

from __future__ import annotations

from typing import Any

from .errors import EsError, _bad_request


def _shards() -> dict:
    return {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


def _validate_index_name(name: str) -> None:
    if name != name.lower() or name.startswith(("-", "_", "+")) or any(c in name for c in '\\/*?"<>| ,#:'):
        raise EsError(
            400,
            "invalid_index_name_exception",
            f"Invalid index name [{name}], must be lowercase",
            extra={"index": name},
        )


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
            ((fname, opts),) = item.items()
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
        raise _bad_request(
            "id must be greater than or equal to 0 and lower than max" if sid != smax else "max must be greater than id"
        )
    return sid, smax
