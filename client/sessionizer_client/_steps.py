"""The steps an operation of the client yields, and how operations that give many things are run
and combined (see ``_core.py``, whose operations these are).

An operation is a generator that yields the I/O it needs as small step records (``Send`` a
request, ``Read`` or ``Close`` a response, take the ``NextChunk`` of a body, ``Sleep``) and is sent
each step's result back, or has its exception thrown in where the step stood. ``Client`` does the
steps with blocking calls, ``AsyncClient`` awaits them; both follow one ``Run``.

An operation that gives many things (jobs, sessions, chunks of bytes) yields each as ``Out(value)``
between its steps. Whoever stops reading one early ends it with ``abandon``, which throws
``Abandoned`` in: so an operation's ``finally`` may still yield a step (to close a response), and
these generators are never ``close()``d.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import httpx

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class Send:
    """Send ``request``; the result is its ``httpx.Response``, the body left unread if ``stream``."""

    request: httpx.Request
    stream: bool = False


@dataclass(frozen=True)
class Read:
    """Read the whole body of a streamed response (which closes it); the result is the bytes."""

    response: httpx.Response


@dataclass(frozen=True)
class Close:
    """Close a response, giving its connection back (a no-op on a closed one)."""

    response: httpx.Response


@dataclass(frozen=True)
class Chunks:
    """Begin reading a streamed body; the result is the iterator of its chunks (async in ``AsyncClient``)."""

    response: httpx.Response


@dataclass(frozen=True)
class NextChunk:
    """The next chunk of ``chunks`` (bytes), or ``None`` at the end of the body."""

    chunks: Iterator[bytes] | AsyncIterator[bytes]


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step: TypeAlias = Send | Read | Close | Chunks | NextChunk | Sleep


@dataclass(frozen=True)
class Out(Generic[T]):
    """One thing an operation gives (a job, a session, a chunk)."""

    value: T


#: an operation that ends with a T
Steps: TypeAlias = Generator[Step, Any, T]
#: an operation that gives T after T
Stream: TypeAlias = Generator[Step | Out[T], Any, None]


class Abandoned(BaseException):
    """Thrown into an operation nobody reads any more: as ``GeneratorExit``, but its ``finally`` may yield."""


class Run(Generic[T]):
    """A shell's place in running ``steps``: the ``step`` to do next, ``None`` once they have ended
    with their ``result``. The shell hands each step's result, or the exception it raised, to ``resume``."""

    result: T

    def __init__(self, steps: Steps[T]) -> None:
        self._steps = steps
        self.step: Step | None = None
        self.resume(None)

    def resume(self, value: Any, error: BaseException | None = None) -> None:
        try:
            self.step = self._steps.send(value) if error is None else self._steps.throw(error)
        except StopIteration as stop:
            self.step, self.result = None, stop.value


def next_out(steps: Stream[T], error: BaseException | None = None) -> Steps[Out[T] | None]:
    """Run ``steps`` (first throwing ``error`` in, if given) up to what it gives next: that ``Out``,
    or ``None`` once it has ended. Each step's result, or exception, goes back where it was asked."""
    value: Any = None  # the last step's result
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration:
            return None
        if isinstance(step, Out):
            return step
        try:
            value, error = (yield step), None
        except BaseException as exc:  # noqa: BLE001  (handed to the operation, which handles or raises it)
            error = exc


def abandon(steps: Stream[Any]) -> Steps[None]:
    """End ``steps`` where they stand, running their ``finally`` blocks (and the steps those yield)."""
    with contextlib.suppress(Abandoned):
        out = yield from next_out(steps, Abandoned())
        while out is not None:  # given on the way out: nobody reads it
            out = yield from next_out(steps)


def each(steps: Stream[T], handle: Callable[[T], Iterable[U]]) -> Stream[U]:
    """What ``steps`` gives, each thing through ``handle`` (which gives none, one or more for it)."""
    try:
        while (out := (yield from next_out(steps))) is not None:
            for value in handle(out.value):
                yield Out(value)
    finally:
        yield from abandon(steps)


def drain(steps: Stream[T], sink: Callable[[T], object]) -> Steps[None]:
    """Everything ``steps`` gives, handed to ``sink``."""
    try:
        while (out := (yield from next_out(steps))) is not None:
            sink(out.value)
    finally:
        yield from abandon(steps)
