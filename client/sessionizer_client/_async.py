"""The asynchronous client: ``AsyncClient`` and ``AsyncJob``, the twins of ``Client`` and ``Job``
(``_sync.py``, whose docstrings they share): the same methods as coroutines, each awaiting the
steps of one operation of ``_core``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, assert_never

import httpx

from . import _steps
from ._core import ClientCore, JobCore, share_docs
from ._retry import RetryPolicy
from ._steps import Out, Run, Steps, Stream, stop
from ._sync import Client, Job
from .models import JobState, Session

if TYPE_CHECKING:
    from .frames import DataFrame

T = TypeVar("T")


class AsyncClient(ClientCore["AsyncJob"]):
    """As ``Client``, for asyncio: every method is a coroutine (``jobs()`` an async iterator)."""

    _http: httpx.AsyncClient

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout, retry)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options(limits))

    def _job(self, data: dict[str, Any], response: httpx.Response | None = None) -> AsyncJob:
        return AsyncJob(self, data, response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _do(self, step: _steps.Step) -> Any:
        match step:
            case _steps.Send():
                return await self._http.send(step.request, stream=step.stream)
            case _steps.Read():
                return await step.response.aread()
            case _steps.Close():
                return await step.response.aclose()
            case _steps.Chunks():
                return step.response.aiter_bytes()
            case _steps.NextChunk():
                assert isinstance(step.chunks, AsyncIterator)
                return await anext(step.chunks, None)
            case _steps.Sleep():
                return await asyncio.sleep(step.seconds)
        assert_never(step)

    async def _advance(self, run: Run[T, Any]) -> Out[T] | None:
        """As ``Client._advance``, awaiting each step."""
        while run.step is not None and not isinstance(run.step, Out):
            try:
                value = await self._do(run.step)
            except BaseException as exc:  # noqa: BLE001  (handed to the operation, which handles or raises it)
                run.resume(None, exc)
            else:
                run.resume(value)
        return run.step

    async def _run(self, steps: Steps[T]) -> T:
        """As ``Client._run``, awaiting each step."""
        run: Run[Any, T] = Run(steps)
        await self._advance(run)
        return run.result

    async def _iterate(self, steps: Stream[T]) -> AsyncIterator[T]:
        """As ``Client._iterate``, an async iterator."""
        run = Run(steps)
        try:
            while (out := await self._advance(run)) is not None:
                for value in out.values:
                    yield value
                run.resume(None)
        finally:
            await self._run(stop(run))

    async def submit(
        self,
        users: Iterable[str] | str,
        start: datetime | str,
        end: datetime | str,
        method: str | None = None,
        params: Mapping[str, Any] | None = None,
        group_by: Iterable[str] | None = None,
        fresh: bool = False,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        return await self._run(self._submit_steps(users, start, end, method, params, group_by, fresh, idempotency_key))

    async def job(self, job_id: str) -> AsyncJob:
        return await self._run(self._job_steps(job_id))

    def jobs(self, status: str | None = None, page_size: int = 100) -> AsyncIterator[AsyncJob]:
        return self._iterate(self._jobs_steps(status, page_size))


class AsyncJob(JobCore):
    """As ``Job``, for asyncio."""

    _client: AsyncClient

    def __init__(self, client: AsyncClient, data: dict[str, Any], response: httpx.Response | None = None) -> None:
        super().__init__(client, data, response)

    async def refresh(self) -> AsyncJob:
        return await self._client._run(self._refresh_steps())

    async def wait(
        self,
        timeout: float | None = None,
        progress: bool | Callable[[JobState], None] = False,
        *,
        long_poll: bool = True,
        poll_interval: float | None = None,
    ) -> AsyncJob:
        return await self._client._run(self._wait_steps(timeout, progress, long_poll, poll_interval))

    def sessions(self, user: str | None = None) -> AsyncIterator[Session]:
        return self._client._iterate(self._sessions_steps(user))

    async def stats(self) -> dict[str, Any]:
        return await self._client._run(self._stats_steps())

    async def to_pandas(self, user: str | None = None) -> DataFrame:
        return await self._client._run(self._pandas_steps(user))

    async def to_parquet(self, path: str | Path, user: str | None = None) -> Path:
        return await self._client._run(self._parquet_steps(path, user))

    async def to_csv(self, path: str | Path, user: str | None = None) -> Path:
        return await self._client._run(self._csv_steps(path, user))

    async def cancel(self) -> AsyncJob:
        return await self._client._run(self._cancel_steps())

    async def delete(self) -> None:
        await self._client._run(self._delete_steps())

    def _iter_bytes(self, accept: str, user: str | None = None) -> AsyncIterator[bytes]:
        return self._client._iterate(self._bytes_steps(accept, user))

    def _rows(self, user: str | None = None) -> AsyncIterator[dict[str, Any]]:
        return self._client._iterate(self._rows_steps(user))


share_docs(AsyncClient, Client)
share_docs(AsyncJob, Job)
