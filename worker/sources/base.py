"""What every event source offers, and the errors it may raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypedDict, Unpack

from .documents import FieldNames

if TYPE_CHECKING:  # the accumulator imports NumPy; a source's signature needs only its name
    from .accumulator import EventAccumulator

ShouldStop = Callable[[], bool]
OnProgress = Callable[[int], None]


class SourceError(Exception):
    """A source could not be read. ``transient`` errors are worth retrying later."""

    transient = False

    def __init__(self, message: str, *, kind: str = "source_error") -> None:
        super().__init__(message)
        self.kind = kind


class TransientSourceError(SourceError):
    transient = True


class PermanentSourceError(SourceError):
    transient = False


class Stopped(Exception):
    """Reading stopped because ``should_stop()`` said so (the job was cancelled)."""


class ReadOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`EventSource.read_events`, declared once for every source.

    ``should_stop()`` is checked between pages and raises :class:`Stopped` when true.
    ``on_progress(n)`` is called after each page with the number of documents scanned so far
    *by this call* (so a restart never counts twice). ``since_ms`` (the job's start) lets a
    source with a shared store count in ``from_source`` what other units of the same job read
    from the source for it (the file store's pieces).
    """

    should_stop: ShouldStop | None
    on_progress: OnProgress | None
    since_ms: int | None


class EventSource(Protocol):
    names: FieldNames

    def read_events(self, users: list[str], lo_ms: int, hi_ms: int, **options: Unpack[ReadOptions]) -> EventAccumulator:
        """Every event of ``users`` with ``lo_ms <= t <= hi_ms`` (both inclusive), read once."""
        ...
