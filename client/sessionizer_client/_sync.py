"""The synchronous client: ``Client`` and the ``Job`` it hands out. Each method runs one operation
of ``_core`` (where the logic is) with blocking calls; ``_async.py`` is its twin for asyncio."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, assert_never

import httpx

from . import _steps
from ._core import ClientCore, JobCore
from ._retry import RetryPolicy
from ._steps import Out, Run, Steps, Stream, stop
from .models import JobState, Session

if TYPE_CHECKING:
    from .frames import DataFrame

T = TypeVar("T")


class Client(ClientCore["Job"]):
    """A Sessionizer service. ``url``/``api_key`` default to ``SESSIONIZER_URL``/``SESSIONIZER_API_KEY``.

    Every call is retried on connection errors, 429 and 502/503/504 (honouring ``Retry-After``);
    ``requests_sent`` counts the HTTP requests made, retries included.
    """

    _http: httpx.Client

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout, retry)
        self._http = httpx.Client(transport=transport, **self._http_options(limits))

    def _job(self, data: dict[str, Any], response: httpx.Response | None = None) -> Job:
        return Job(self, data, response)

    def close(self) -> None:
        """Close the connections (leaving a ``with`` block does it)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _do(self, step: _steps.Step) -> Any:
        match step:
            case _steps.Send():
                return self._http.send(step.request, stream=step.stream)
            case _steps.Read():
                return step.response.read()
            case _steps.Close():
                return step.response.close()
            case _steps.Chunks():
                return step.response.iter_bytes()
            case _steps.NextChunk():
                assert isinstance(step.chunks, Iterator)
                return next(step.chunks, None)
            case _steps.Sleep():
                return time.sleep(step.seconds)
        assert_never(step)

    def _advance(self, run: Run[T, Any]) -> Out[T] | None:
        """Do ``run``'s steps up to what it gives next (``None`` once it has ended)."""
        while run.step is not None and not isinstance(run.step, Out):
            try:
                value = self._do(run.step)
            except BaseException as exc:  # noqa: BLE001  (handed to the operation, which handles or raises it)
                run.resume(None, exc)
            else:
                run.resume(value)
        return run.step

    def _run(self, steps: Steps[T]) -> T:
        """Do ``steps`` (an operation of ``_core``) one by one; their result."""
        run: Run[Any, T] = Run(steps)
        self._advance(run)
        return run.result

    def _iterate(self, steps: Stream[T]) -> Iterator[T]:
        """What ``steps`` gives, as an iterator; stopped early, it ends them (their ``finally`` blocks)."""
        run = Run(steps)
        try:
            while (out := self._advance(run)) is not None:
                yield from out.values
                run.resume(None)
        finally:
            self._run(stop(run))

    def submit(
        self,
        users: Iterable[str] | str,
        start: datetime | str,
        end: datetime | str,
        method: str | None = None,
        params: Mapping[str, Any] | None = None,
        group_by: Iterable[str] | None = None,
        fresh: bool = False,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a job; retried safely under one ``Idempotency-Key`` (generated when not given)."""
        return self._run(self._submit_steps(users, start, end, method, params, group_by, fresh, idempotency_key))

    def job(self, job_id: str) -> Job:
        """A job by id (its continuation token), from this process or any other."""
        return self._run(self._job_steps(job_id))

    def jobs(self, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job of this API key, newest first, following ``next_cursor`` page after page."""
        return self._iterate(self._jobs_steps(status, page_size))


class Job(JobCore):
    """A submitted job: poll it, wait for it, read its sessions."""

    _client: Client

    def __init__(self, client: Client, data: dict[str, Any], response: httpx.Response | None = None) -> None:
        super().__init__(client, data, response)

    def refresh(self) -> Job:
        """The job as the service sees it now (one request, no waiting)."""
        return self._client._run(self._refresh_steps())

    def wait(
        self,
        timeout: float | None = None,
        progress: bool | Callable[[JobState], None] = False,
        *,
        long_poll: bool = True,
        poll_interval: float | None = None,
    ) -> Job:
        """Until the job has finished: ``Prefer: wait`` long polls (or plain polls every
        ``poll_interval``, default the service's ``Retry-After``). Raises ``JobFailed``/``JobCancelled``
        with the service's reason; ``WaitTimeout`` after ``timeout`` s (the job goes on)."""
        return self._client._run(self._wait_steps(timeout, progress, long_poll, poll_interval))

    def sessions(self, user: str | None = None) -> Iterator[Session]:
        """The sessions, streamed (NDJSON): memory stays flat however many there are, and a stream
        that breaks off is resumed (page by page, following ``Link``) instead of raising."""
        return self._client._iterate(self._sessions_steps(user))

    def stats(self) -> dict[str, Any]:
        """The result's counts and figures: users, events, invalid_events, noise_events, sessions,
        engaged_sessions, bounce_rate, median_duration_s, p90_duration_s, sessions_per_user_median."""
        return self._client._run(self._stats_steps())

    def to_pandas(self, user: str | None = None) -> DataFrame:
        """A DataFrame: UTC datetimes, categorical user and instance, integer events, booleans."""
        return self._client._run(self._pandas_steps(user))

    def to_parquet(self, path: str | Path, user: str | None = None) -> Path:
        """Stream the sessions into a Parquet file (written in row groups; memory stays flat)."""
        return self._client._run(self._parquet_steps(path, user))

    def to_csv(self, path: str | Path, user: str | None = None) -> Path:
        """The service's CSV (a header row, then one session a row), streamed to a file (resumed
        if the stream breaks off)."""
        return self._client._run(self._csv_steps(path, user))

    def cancel(self) -> Job:
        """Ask the service to cancel the job; one that already succeeded or failed raises
        ``Conflict`` (``.job_status``), a cancelled one stays cancelled."""
        return self._client._run(self._cancel_steps())

    def delete(self) -> None:
        """Cancel the job if it runs, then forget it and its sessions (later reads: ``NotFound``)."""
        self._client._run(self._delete_steps())

    def _iter_bytes(self, accept: str, user: str | None = None) -> Iterator[bytes]:
        """The sessions in ``accept`` (NDJSON or CSV), as the service writes them."""
        return self._client._iterate(self._bytes_steps(accept, user))

    def _rows(self, user: str | None = None) -> Iterator[dict[str, Any]]:
        """The sessions as the service's JSON rows."""
        return self._client._iterate(self._rows_steps(user))
