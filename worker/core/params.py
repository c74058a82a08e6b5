"""Validation and completion of sessionization parameters.

Every public entry point of :mod:`worker.core` goes through :func:`method_params`,
so a bad method name or parameter fails early with a ``ValueError`` that says
which value is wrong and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sessionizer.methods import METHODS as SPECS
from sessionizer.methods import Param, params_of
from sessionizer.methods import defaults as spec_defaults

__all__ = ["METHODS", "DEFAULTS", "method_params", "read_margin_ms", "idle_threshold_ms", "max_session_ms"]

# Names, types, defaults and bounds are declared once, in sessionizer/methods.py (pure Python,
# shared with the API's schemas); this module validates against them.
METHODS = tuple(SPECS)
DEFAULTS: dict[str, dict[str, Any]] = {method: spec_defaults(method) for method in METHODS}


def _is_int(value: Any) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu" and getattr(value, "ndim", 1) == 0)
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number)


def _check(method: str, p: Param, value: Any) -> Any:
    """``value`` as the parameter's type, or a ``ValueError`` naming the parameter and its bounds."""
    if p.kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{method}: {p.name} must be true or false, got {value!r}")
        return value
    if p.kind is int:
        ok, what = _is_int(value), "an integer"
    else:
        ok, what = _is_number(value), "a finite number of seconds"
    number = p.kind(value) if ok else math.nan
    if ok and p.minimum is not None:
        ok = number > p.minimum if p.exclusive_minimum else number >= p.minimum
    if ok and p.maximum is not None:
        ok = number <= p.maximum
    if not ok:
        raise ValueError(f"{method}: {p.name} must be {what} {p.bounds_text()}, got {value!r}")
    return number


def method_params(
    method: str,
    params: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate ``params`` for ``method`` and fill in the missing ones.

    Parameters
    ----------
    method : str
        ``"hdbscan"`` or ``"gap"``.
    params : mapping or None
        Caller-supplied parameters; unknown keys are rejected.
    defaults : mapping or None
        Overrides of the declared defaults (``sessionizer/methods.py``); validated
        like ``params``.

    Returns
    -------
    dict
        Every parameter of the method, validated. For ``hdbscan``, ``min_samples``
        is resolved (``None`` -> ``min_cluster_size``, as hdbscan does).

    Raises
    ------
    ValueError
        Unknown method, unknown parameter, or a value of the wrong type or range.
    """
    if method not in DEFAULTS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    merged: dict[str, Any] = dict(DEFAULTS[method])
    for source_name, source in (("defaults", defaults), ("params", params)):
        if source is None:
            continue
        if not isinstance(source, Mapping):
            raise ValueError(f"{method}: {source_name} must be a mapping, got {type(source).__name__}")
        unknown = sorted(set(source) - set(DEFAULTS[method]))
        if unknown:
            raise ValueError(
                f"{method}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"expected {', '.join(DEFAULTS[method])}"
            )
        merged.update(source)

    out = {
        name: None if merged[name] is None and p.nullable else _check(method, p, merged[name])
        for name, p in params_of(method).items()
    }
    if method == "hdbscan" and out["min_samples"] is None:
        out["min_samples"] = out["min_cluster_size"]
    return out


def max_session_ms(params: Mapping[str, Any]) -> int | None:
    """``max_session_s`` of validated params in whole milliseconds, ``None`` for no limit."""
    longest = params.get("max_session_s")
    return None if longest is None else int(math.floor(longest * 1000.0))


def idle_threshold_ms(method: str, params: Mapping[str, Any]) -> int:
    """Idle time (ms) above which events can never share a session/activity block.

    A gap strictly longer than this separates blocks: ``diff > idle_threshold_ms``.
    Sub-millisecond parts are dropped (timestamps are integers, so ``diff > 1800.5 s``
    and ``diff > 1800 s`` differ only for a 1800.5 s float threshold, never for ms data).
    """
    p = method_params(method, params)
    seconds = p["max_gap_s"] if method == "gap" else p["split_idle_s"]
    return int(math.floor(seconds * 1000.0))


def read_margin_ms(method: str, params: Mapping[str, Any] | None) -> int:
    """How far (ms) beyond ``[start, end]`` a job should read.

    Sessions are cut from activity blocks (maximal runs of events without an idle gap
    longer than the method's idle threshold: ``max_gap_s`` for ``gap``, ``split_idle_s``
    for ``hdbscan``). A block overlapping the queried range is read whole when it
    extends at most ``max_span_s`` beyond the range, because the margin also covers
    the idle gap that proves where it ends: margin = ``max_span_s`` + idle threshold
    (+1 ms, since the threshold is exclusive). Longer blocks come back flagged
    ``truncated_start``/``truncated_end`` by :func:`summarize_sessions`.
    """
    p = method_params(method, params)
    return int(math.ceil(p["max_span_s"] * 1000.0)) + idle_threshold_ms(method, p) + 1
