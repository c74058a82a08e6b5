"""An event source whose reads are counted (``worker/metrics.py``)."""

from __future__ import annotations

from typing import Any, Unpack

from ..metrics import EVENTS_FROM_SOURCE, EVENTS_SCANNED, INVALID_EVENTS, SOURCE_FAILURES
from .accumulator import EventAccumulator
from .base import EventSource, ReadOptions, SourceError


class InstrumentedSource:
    """An event source whose reads count the documents used and those taken from the source
    itself (not from the event store), the invalid ones, and whose failures are counted by kind.

    Everything else (``counts``, ``version``, ...) is the inner source's."""

    def __init__(self, inner: EventSource, kind: str) -> None:
        self.inner, self.kind = inner, kind
        self.names = inner.names

    def read_events(self, users: list[str], lo_ms: int, hi_ms: int, **options: Unpack[ReadOptions]) -> EventAccumulator:
        try:
            acc = self.inner.read_events(users, lo_ms, hi_ms, **options)
        except SourceError as exc:
            SOURCE_FAILURES.labels(self.kind, exc.kind).inc()
            raise
        EVENTS_SCANNED.inc(acc.scanned)
        EVENTS_FROM_SOURCE.inc(acc.scanned if acc.from_source is None else acc.from_source)
        INVALID_EVENTS.inc(acc.invalid)
        return acc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
