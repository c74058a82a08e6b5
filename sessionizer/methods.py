"""The sessionization methods' parameters, defined once: names, types, defaults, bounds and
meanings. Pure Python data: the core (``worker/core/params.py``) validates from it, and the
API's schemas and OpenAPI descriptions (``webapp/jobs/params.py``) are generated from it, so
the documented defaults are the applied ones.

Adding a parameter is one :class:`Param` here (and its use in the core). The defaults were chosen
with ``python -m benchmarks.bench_quality --tune`` (see worker/core/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_YEAR_S = 31_622_400  # 366 days: no idle gap or span worth a parameter is longer
_MAX_EVENTS = 100_000


@dataclass(frozen=True)
class Param:
    """One parameter of a method."""

    name: str
    kind: type  # int, float (seconds) or bool
    default: Any
    description: str  # what it means; the default is appended where it is shown
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False  # minimum itself refused (a duration that must be > 0)
    nullable: bool = False  # None accepted: see the description for what it stands for
    default_text: str | None = None  # how the default reads where it is not a plain value

    def bounds_text(self) -> str:
        if self.kind is bool:
            return "true or false"
        low = f"> {self.minimum:g}" if self.exclusive_minimum else f">= {self.minimum:g}"
        return f"{low} and <= {self.maximum:g}" if self.maximum is not None else low


MAX_SPAN_S = Param(
    "max_span_s",
    float,
    86400.0,
    "Longest activity block (seconds) read whole beyond the range's edges; a longer one is flagged truncated.",
    minimum=0,
    maximum=_YEAR_S,
    exclusive_minimum=True,
)

MAX_SESSION_S = Param(
    "max_session_s",
    float,
    None,
    "Longest session in seconds (null: no limit): a longer one is cut every max_session_s from its first event, "
    "so the cuts do not depend on the range asked.",
    minimum=1,
    maximum=_YEAR_S,
    nullable=True,
)

# How a session is described, as analytics tools do (GA4's engaged sessions, PostHog's active
# time): they change no boundary, only the session's ``engaged`` and ``active_s``.
ENGAGEMENT = (
    Param(
        "engaged_min_s",
        float,
        10.0,
        "A session lasting at least this many seconds is engaged (GA4's rule).",
        minimum=0,
        maximum=_YEAR_S,
    ),
    Param(
        "engaged_min_views",
        int,
        2,
        "A session of at least this many events is engaged, whatever its length.",
        minimum=1,
        maximum=_MAX_EVENTS,
    ),
    Param(
        "active_gap_s",
        float,
        300.0,
        "active_s sums the gaps between a session's consecutive events of at most this many seconds.",
        minimum=0,
        maximum=_YEAR_S,
    ),
)

METHODS: dict[str, tuple[Param, ...]] = {
    "hdbscan": (
        Param("min_cluster_size", int, 5, "Fewest events a session may have.", minimum=2, maximum=_MAX_EVENTS),
        Param(
            "min_samples",
            int,
            None,
            "Neighbours defining an event's core distance.",
            minimum=1,
            maximum=_MAX_EVENTS,
            nullable=True,
            default_text="min_cluster_size, as hdbscan",
        ),
        Param(
            "cluster_selection_epsilon_s",
            float,
            1200.0,
            "Sessions are never split at an idle gap shorter than this many seconds.",
            minimum=0,
            maximum=_YEAR_S,
        ),
        Param(
            "split_idle_s",
            float,
            3600.0,
            "Idle seconds that always separate two activity blocks; HDBSCAN runs per block.",
            minimum=0,
            maximum=_YEAR_S,
            exclusive_minimum=True,
        ),
        Param(
            "allow_single_cluster", bool, True, "A block may form a single session (hdbscan's own default is false)."
        ),
        MAX_SPAN_S,
        MAX_SESSION_S,
        *ENGAGEMENT,
    ),
    "gap": (
        Param(
            "max_gap_s",
            float,
            1800.0,
            "A new session starts after more than this many idle seconds.",
            minimum=0,
            maximum=_YEAR_S,
            exclusive_minimum=True,
        ),
        MAX_SPAN_S,
        MAX_SESSION_S,
        *ENGAGEMENT,
    ),
}

# Why a session ended: the values of a session's ``split_reason`` (the core's
# worker/core/rules.py gives them, the API documents them), the first that applies.
SPLIT_REASONS: dict[str, str] = {
    "end_of_data": "it reaches the end of what was read (it is truncated_end), so why it ends is unknown",
    "max_length": "it was cut at max_session_s; the next piece of the same session follows",
    "density_split": "hdbscan only: later events of its activity block went to other sessions or noise",
    "idle_gap": "no event of its activity block follows it: the next event, if any, comes more than the idle "
    "threshold (max_gap_s, split_idle_s) later",
}
DEFAULT_METHOD = "hdbscan"


def params_of(method: str) -> dict[str, Param]:
    """The method's parameters by name; ``KeyError`` for an unknown method."""
    return {p.name: p for p in METHODS[method]}


def defaults(method: str) -> dict[str, Any]:
    """The method's declared defaults (``None`` where the default derives from another parameter)."""
    return {p.name: p.default for p in METHODS[method]}


def describe(param: Param) -> str:
    """The parameter's meaning, its bounds and its default, as the API documents it."""
    if param.default_text:
        default = param.default_text
    elif param.default is None:
        default = "null"
    else:
        default = str(param.default).lower() if param.kind is bool else f"{param.default:g}"
    return f"{param.description} Default {default}; {param.bounds_text()}."


# The parameter whose idle gap always separates two activity blocks, per method.
IDLE_PARAM = {"hdbscan": "split_idle_s", "gap": "max_gap_s"}


def read_margin_s(method: str, params: dict[str, Any]) -> float:
    """How far (seconds) beyond ``[start, end]`` a job reads: ``max_span_s`` plus the method's
    idle threshold, defaults filled in. The core's ``read_margin_ms`` is this, in whole ms (+1);
    the API uses it to tell when everything a job reads has settled."""
    values = {**defaults(method), **{k: v for k, v in params.items() if v is not None}}
    return float(values["max_span_s"]) + float(values[IDLE_PARAM[method]])
