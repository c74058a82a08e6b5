"""Sessionization core: pure NumPy, no Celery, Flask or Elasticsearch.

See ``worker/core/README.md`` for the methods and what their parameters mean.
"""

from .params import method_params, read_margin_ms
from .rules import SPLIT_REASONS
from .sessions import SessionTable, label_sessions, select_overlapping, summarize_sessions

__all__ = [
    "SPLIT_REASONS",
    "SessionTable",
    "label_sessions",
    "method_params",
    "read_margin_ms",
    "select_overlapping",
    "summarize_sessions",
]
