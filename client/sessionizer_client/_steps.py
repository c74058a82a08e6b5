"""The steps an operation of the client yields, and how operations that give many things are run
and combined (see ``_core.py``, whose operations these are).

An operation is a generator that yields the I/O it needs as small step records (``Send`` a
request, ``Read`` or ``Close`` a response, take the ``NextChunk`` of a body, ``Sleep``) and is sent
each step's result back, or has its exception thrown in where the step stood. ``Client`` does the
steps with blocking calls, ``AsyncClient`` awaits them; both follow one ``Run``.

An operation that gives many things (jobs, sessions, chunks of bytes) yields them between its
steps, a batch at a time, as ``Out(values)``. Whoever stops reading one early ends it with ``stop``,
which throws ``Abandoned`` in: so an operation's ``finally`` may still yield a step (to close a
response), and these generators are never ``close()``d.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import httpx

T = TypeVar("T")
U = TypeVar("U")
R = TypeVar("R")


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
    """Things an operation gives (jobs of a page, sessions of a chunk, a chunk), in their order."""

    values: Sequence[T]


#: an operation that ends with a T
Steps: TypeAlias = Generator[Step, Any, T]
#: an operation that gives T after T
Stream: TypeAlias = Generator[Step | Out[T], Any, None]


class Abandoned(BaseException):
    """Thrown into an operation nobody reads any more: as ``GeneratorExit``, but its ``finally`` may yield."""


class Run(Generic[T, R]):
    """A place in running an operation: ``step`` is the step to do next, or an ``Out`` it gives, or
    ``None`` once it has ended (with its ``result``). Whoever does a step hands its result, or the
    exception it raised, to ``resume``; after an ``Out``, ``resume(None)`` asks for what follows."""

    result: R

    def __init__(self, steps: Generator[Step | Out[T], Any, R]) -> None:
        self._steps = steps
        self.step: Step | Out[T] | None = None
        self.resume(None)

    def resume(self, value: Any, error: BaseException | None = None) -> None:
        try:
            self.step = self._steps.send(value) if error is None else self._steps.throw(error)
        except StopIteration as done:
            self.step, self.result = None, done.value


def forward(run: Run[Any, Any]) -> Steps[None]:
    """Yield ``run``'s steps, each result (or exception) back to it, up to what it gives next or its end."""
    while run.step is not None and not isinstance(run.step, Out):
        try:
            value = yield run.step
        except BaseException as exc:  # noqa: BLE001  (handed to the operation, which handles or raises it)
            run.resume(None, exc)
        else:
            run.resume(value)


def stop(run: Run[Any, Any]) -> Steps[None]:
    """Stop ``run`` where it stands (unless it has ended), running its ``finally`` blocks and their steps."""
    if run.step is None:
        return
    with contextlib.suppress(Abandoned):
        run.resume(None, Abandoned())
        while run.step is not None:
            if isinstance(run.step, Out):
                run.resume(None)  # given on the way out: nobody reads it
            else:
                yield from forward(run)


def each(steps: Stream[T], handle: Callable[[T], Iterable[U]]) -> Stream[U]:
    """What ``steps`` gives, each thing through ``handle`` (which gives none, one or more for it)."""
    run = Run(steps)
    try:
        while run.step is not None:
            if isinstance(run.step, Out):
                values = [handled for value in run.step.values for handled in handle(value)]
                if values:
                    yield Out(values)
                run.resume(None)
            else:
                yield from forward(run)
    finally:
        yield from stop(run)


def drain(steps: Stream[T], sink: Callable[[T], object]) -> Steps[None]:
    """Everything ``steps`` gives, handed to ``sink``."""
    run = Run(steps)
    try:
        while run.step is not None:
            if isinstance(run.step, Out):
                for value in run.step.values:
                    sink(value)
                run.resume(None)
            else:
                yield from forward(run)
    finally:
        yield from stop(run)
