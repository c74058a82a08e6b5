"""Validation and completion of sessionization parameters.

Every public entry point of :mod:`worker.core` goes through :func:`method_params`,
so a bad method name or parameter fails early with a ``ValueError`` that says
which value is wrong and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["METHODS", "DEFAULTS", "method_params", "read_margin_ms", "idle_threshold_ms"]

METHODS = ("hdbscan", "gap")

# Built-in defaults; ``config/defaults.toml`` ([methods.<name>]) may override them
# through the ``defaults`` argument of :func:`method_params`. The values were
# chosen with ``python -m benchmarks.bench_quality`` (see worker/core/README.md).
DEFAULTS: dict[str, dict[str, Any]] = {
    "hdbscan": {
        "min_cluster_size": 5,
        "min_samples": None,
        "cluster_selection_epsilon_s": 1200.0,
        "split_idle_s": 3600.0,
        "allow_single_cluster": True,
        "max_span_s": 86400.0,
    },
    "gap": {
        "max_gap_s": 1800.0,
        "max_span_s": 86400.0,
    },
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or (
        hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu" and getattr(value, "ndim", 1) == 0
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number)


def _check_int(method: str, name: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or int(value) < minimum:
        raise ValueError(f"{method}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_seconds(method: str, name: str, value: Any, *, positive: bool) -> float:
    if not _is_number(value) or float(value) < 0 or (positive and float(value) == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{method}: {name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


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
        Overrides of the built-in defaults (e.g. the ``[methods.<method>]`` table of
        ``config/defaults.toml``); validated like ``params``.

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

    out: dict[str, Any] = {}
    if method == "gap":
        out["max_gap_s"] = _check_seconds(method, "max_gap_s", merged["max_gap_s"], positive=True)
    else:
        mcs = _check_int(method, "min_cluster_size", merged["min_cluster_size"], 2)
        ms = merged["min_samples"]
        out["min_cluster_size"] = mcs
        out["min_samples"] = mcs if ms is None else _check_int(method, "min_samples", ms, 1)
        out["cluster_selection_epsilon_s"] = _check_seconds(
            method, "cluster_selection_epsilon_s", merged["cluster_selection_epsilon_s"], positive=False
        )
        out["split_idle_s"] = _check_seconds(method, "split_idle_s", merged["split_idle_s"], positive=True)
        single = merged["allow_single_cluster"]
        if not isinstance(single, bool):
            raise ValueError(f"{method}: allow_single_cluster must be true or false, got {single!r}")
        out["allow_single_cluster"] = single
    out["max_span_s"] = _check_seconds(method, "max_span_s", merged["max_span_s"], positive=False)
    return out


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
