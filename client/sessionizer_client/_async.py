"""The asynchronous client: ``AsyncClient`` and ``AsyncJob``, the same methods as coroutines."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from . import __version__
from ._retry import RetryPolicy, log, parse_retry_after
from .errors import ConnectionFailed, WaitTimeout, error_from_response
from .models import (
    CSV,
    NDJSON,
    JobState,
    Session,
    atomic_file,
    check_outcome,
    next_wait,
    poll_pause,
    resolve,
    submit_body,
)
from .progress import display

if TYPE_CHECKING:
    import pandas


class AsyncClient:
    """As ``Client``, for asyncio: every method is a coroutine (``jobs()`` an async iterator)."""

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
        self.url, key = resolve(url, api_key)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.requests_sent = 0
        headers = {"User-Agent": f"sessionizer-client/{__version__}"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=limits or httpx.Limits(max_connections=100),
            event_hooks={"request": [self._count]},
        )

    async def _count(self, request: httpx.Request) -> None:
        self.requests_sent += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(
        self, method: str, path: str, *, stream: bool = False, submit: bool = False, wait_s: int = 0, **kwargs: Any
    ) -> httpx.Response:
        timeout = httpx.Timeout(self.timeout, read=self.timeout + wait_s)
        attempt = 0
        while True:
            request = self._http.build_request(method, path, timeout=timeout, **kwargs)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.after_error(attempt, request, exc)
                if delay is None:
                    raise ConnectionFailed(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc
            else:
                delay = self.retry.after_status(attempt, response, submit=submit)
                if delay is None:
                    if response.is_error:
                        await response.aread()
                        await response.aclose()
                        raise error_from_response(response)
                    return response
                await response.aclose()
            await asyncio.sleep(delay)
            attempt += 1

    async def _job_data(self, job_id: str, wait_s: int = 0) -> tuple[dict[str, Any], httpx.Response]:
        headers = {"Prefer": f"wait={wait_s}"} if wait_s else {}
        response = await self._send("GET", f"/jobs/{job_id}", headers=headers, wait_s=wait_s)
        return response.json(), response

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
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        if fresh:
            headers["Cache-Control"] = "no-cache"
        body = submit_body(users, start, end, method, params, group_by)
        response = await self._send("POST", "/jobs", json=body, headers=headers, submit=True)
        return AsyncJob(self, response.json(), response)

    async def job(self, job_id: str) -> AsyncJob:
        data, response = await self._job_data(job_id)
        return AsyncJob(self, data, response)

    async def jobs(self, status: str | None = None, page_size: int = 100) -> AsyncIterator[AsyncJob]:
        params: dict[str, Any] = {"limit": page_size}
        if status:
            params["status"] = status
        while True:
            page = (await self._send("GET", "/jobs", params=params)).json()
            for data in page["jobs"]:
                yield AsyncJob(self, data)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]


class AsyncJob(JobState):
    """As ``Job``, for asyncio."""

    def __init__(self, client: AsyncClient, data: dict[str, Any], response: httpx.Response | None = None) -> None:
        super().__init__(data)
        self._client = client
        self._saw(response)

    def _saw(self, response: httpx.Response | None) -> None:
        if response is not None:
            self.retry_after = parse_retry_after(response.headers.get("Retry-After"))
            self.wait_applied = "Preference-Applied" in response.headers

    async def _fetch(self, wait_s: int = 0) -> None:
        self.data, response = await self._client._job_data(self.id, wait_s)
        self._saw(response)

    async def refresh(self) -> AsyncJob:
        await self._fetch()
        return self

    async def wait(
        self,
        timeout: float | None = None,
        progress: bool | Callable[[JobState], None] = False,
        *,
        long_poll: bool = True,
        poll_interval: float | None = None,
    ) -> AsyncJob:
        deadline = None if timeout is None else time.monotonic() + timeout
        with display(progress) as show:
            show(self)
            while not self.done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeout(self, timeout or 0)
                if long_poll:
                    await self._fetch(next_wait(remaining, bool(progress)))
                    if not self.done and not self.wait_applied:
                        # the service declined to hold the answer (its cap on waits per key):
                        # poll at its pace rather than spin
                        log.info("job %s: wait not held by the service; polling", self.id)
                        await asyncio.sleep(poll_pause(self.retry_after, poll_interval, remaining))
                else:
                    await asyncio.sleep(poll_pause(self.retry_after, poll_interval, remaining))
                    await self._fetch()
                show(self)
        check_outcome(self)
        return self

    #: as ``Job.page_size``
    page_size = 10_000

    async def _pages(self, accept: str, user: str | None) -> AsyncIterator[bytes]:
        """As ``Job._pages``: the pages, following ``Link: rel="next"``, a dropped one asked again."""
        url: str | None = f"/jobs/{self.id}/sessions"
        params: dict[str, Any] | None = {"limit": self.page_size, **({"user": user} if user else {})}
        attempt = first = 0
        while url:
            response = await self._client._send("GET", url, headers={"Accept": accept}, params=params, stream=True)
            try:
                body = await response.aread()
            except httpx.TransportError as exc:  # the stream dropped mid-page
                delay = self._client.retry.after_error(attempt, response.request, exc)
                if delay is None:
                    raise ConnectionFailed(f"GET {response.request.url.path}: {type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(delay)
                attempt += 1
                continue
            finally:
                await response.aclose()
            attempt = 0
            yield body if first == 0 or accept != CSV else body.partition(b"\n")[2]
            first += 1
            url, params = response.links.get("next", {}).get("url"), None

    async def _iter_bytes(self, accept: str, user: str | None = None) -> AsyncIterator[bytes]:
        """As ``Job._iter_bytes``: one stream, resumed page by page if it breaks off."""
        given = 0
        params = {"user": user} if user else None
        response = await self._client._send(
            "GET", f"/jobs/{self.id}/sessions", headers={"Accept": accept}, params=params, stream=True
        )
        try:
            async for chunk in response.aiter_bytes():
                given += len(chunk)
                yield chunk
            return
        except httpx.TransportError as exc:
            log.info(
                "job %s: the sessions stream broke off after %d bytes (%s): resuming page by page",
                self.id,
                given,
                type(exc).__name__,
            )
        finally:
            await response.aclose()
        async for body in self._pages(accept, user):
            if given >= len(body):
                given -= len(body)
                continue
            yield body[given:]
            given = 0

    async def _rows(self, user: str | None = None) -> AsyncIterator[dict[str, Any]]:
        rest = b""
        async for chunk in self._iter_bytes(NDJSON, user):
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                if line:
                    yield json.loads(line)
        if rest.strip():
            yield json.loads(rest)

    async def sessions(self, user: str | None = None) -> AsyncIterator[Session]:
        async for row in self._rows(user):
            yield Session.from_json(row)

    async def stats(self) -> dict[str, Any]:
        return (await self._client._send("GET", f"/jobs/{self.id}/sessions", params={"limit": 1})).json()["stats"]

    async def to_pandas(self, user: str | None = None) -> pandas.DataFrame:
        from .frames import TableBuilder

        builder = TableBuilder()
        async for row in self._rows(user):
            builder.add(row)
        return builder.to_pandas()

    async def to_parquet(self, path: str | Path, user: str | None = None) -> Path:
        from .frames import ParquetSink

        with atomic_file(path) as fh, ParquetSink(fh) as sink:
            async for row in self._rows(user):
                sink.add(row)
        return Path(path)

    async def to_csv(self, path: str | Path, user: str | None = None) -> Path:
        with atomic_file(path) as fh:
            async for chunk in self._iter_bytes(CSV, user):
                fh.write(chunk)
        return Path(path)

    async def cancel(self) -> AsyncJob:
        self.data = (await self._client._send("POST", f"/jobs/{self.id}/cancel")).json()
        return self

    async def delete(self) -> None:
        await self._client._send("DELETE", f"/jobs/{self.id}")
