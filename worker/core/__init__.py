"""Sessionization core: pure NumPy, no Celery, Flask or Elasticsearch.

See ``worker/core/README.md`` for the methods and what their parameters mean.
"""

from .params import method_params, read_margin_ms
from .ranges import RangeSessions, select_overlapping, sessions_in_range
from .rules import SPLIT_REASONS
from .sessions import SessionLabels, SessionTable, label_and_cut, label_sessions, summarize_sessions

__all__ = [
    "SPLIT_REASONS",
    "RangeSessions",
    "SessionLabels",
    "SessionTable",
    "label_and_cut",
    "label_sessions",
    "method_params",
    "read_margin_ms",
    "select_overlapping",
    "sessions_in_range",
    "summarize_sessions",
]
