"""Response shaping: JSON encoding, ``filter_path`` and ``_source`` filtering."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import orjson

from .errors import _bad_request


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
