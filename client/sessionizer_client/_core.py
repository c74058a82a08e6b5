"""The client, written once: every call of ``Client`` and ``AsyncClient``, as steps (sans-IO).

Each operation here (``ClientCore._submit_steps``, ``JobCore._wait_steps``, ...) is a generator of
the steps of ``_steps.py``: it builds the requests, reads the answers and problems, decides the
retries, the long polls and the resumption of a broken stream, but never touches a socket nor
sleeps itself. ``Client`` (``_sync.py``) does its steps with blocking calls and ``AsyncClient``
(``_async.py``) awaits them: the logic exists once, and the two clients cannot drift apart.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import httpx

from . import __version__
from ._files import atomic_file
from ._retry import RetryPolicy, log, parse_retry_after
from ._steps import Chunks, Close, NextChunk, Out, Read, Send, Sleep, Steps, Stream, drain, each
from .errors import ConnectionFailed, JobCancelled, JobFailed, WaitTimeout, error_from_response
from .models import JobState, Session
from .progress import Show, display

if TYPE_CHECKING:
    from .frames import DataFrame

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
NDJSON, CSV = "application/x-ndjson", "text/csv"
MAX_WAIT_S = 60  # the service caps `Prefer: wait` at its MAX_WAIT_S (60 by default) anyway
PROGRESS_WAIT_S = 1  # long polls while a progress bar is shown: short, so the bar moves


# --- what is computed, not sent -----------------------------------------------------------------
def resolve(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The service URL and key: the arguments, else ``SESSIONIZER_URL`` / ``SESSIONIZER_API_KEY``."""
    url = url or os.environ.get("SESSIONIZER_URL") or DEFAULT_URL
    return url.rstrip("/"), api_key or os.environ.get("SESSIONIZER_API_KEY") or None


def _iso(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def next_wait(remaining: float | None, progress: bool) -> int:
    """Seconds to ask with ``Prefer: wait`` for the next long poll (whole seconds, at least 1)."""
    cap = PROGRESS_WAIT_S if progress else MAX_WAIT_S
    return cap if remaining is None else max(1, min(cap, math.ceil(remaining)))


def poll_pause(retry_after: float | None, poll_interval: float | None, remaining: float | None) -> float:
    """Seconds to sleep before a plain poll: the caller's interval, else the service's ``Retry-After``."""
    pause = poll_interval or retry_after or 1.0
    return pause if remaining is None else max(0.0, min(pause, remaining))


def check_outcome(job: JobState) -> None:
    """Raise ``JobFailed`` / ``JobCancelled`` for a job that ended without sessions."""
    if job.status == "failed":
        raise JobFailed(job)
    if job.status == "cancelled":
        raise JobCancelled(job)


class Lines(Generic[T]):
    """What ``parse`` makes of each line of NDJSON chunks cut anywhere: ``feed`` each chunk, then ``end``."""

    def __init__(self, parse: Callable[[bytes], T]) -> None:
        self.parse = parse
        self.rest = b""

    def feed(self, chunk: bytes) -> list[T]:
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        return [self.parse(line) for line in lines if line]

    def end(self) -> list[T]:
        return [self.parse(self.rest)] if self.rest.strip() else []


class Skip:
    """Drops the first ``count`` bytes of the bodies handed to it (the ones already given)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __call__(self, body: bytes) -> list[bytes]:
        if self.count >= len(body):
            self.count -= len(body)
            return []
        body, self.count = body[self.count :], 0
        return [body]


#: the async twin's name of a sync method, where they differ
ASYNC_NAMES = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}


def share_docs(twin: type, documented: type) -> None:
    """Give each public method of ``twin`` that has no docstring the one of ``documented``'s twin."""
    for name, method in vars(documented).items():
        ours = vars(twin).get(ASYNC_NAMES.get(name, name))
        if callable(method) and callable(ours) and ours.__doc__ is None:
            ours.__doc__ = method.__doc__


# --- the client's and the job's operations ------------------------------------------------------
J = TypeVar("J", bound="JobCore")


class ClientCore(Generic[J]):
    """What ``Client`` and ``AsyncClient`` share: their settings, and every call as steps."""

    _http: httpx.Client | httpx.AsyncClient

    def __init__(self, url: str | None, api_key: str | None, timeout: float, retry: RetryPolicy | None) -> None:
        self.url, key = resolve(url, api_key)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.requests_sent = 0
        self._headers = {"User-Agent": f"sessionizer-client/{__version__}"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    def _job(self, data: dict[str, Any], response: httpx.Response | None = None) -> J:
        """The shell's job (``Job`` or ``AsyncJob``) for this JSON body."""
        raise NotImplementedError

    def _http_options(self, limits: httpx.Limits | None) -> dict[str, Any]:
        """The ``httpx.Client`` / ``httpx.AsyncClient`` arguments but the transport."""
        return {
            "base_url": self.url,
            "headers": self._headers,
            "timeout": self.timeout,
            "limits": limits or httpx.Limits(max_connections=100),
        }

    def _call_steps(
        self, method: str, path: str, *, stream: bool = False, submit: bool = False, wait_s: int = 0, **kwargs: Any
    ) -> Steps[httpx.Response]:
        """One call, retried as ``self.retry`` says; an error answer raises its typed error."""
        timeout = httpx.Timeout(self.timeout, read=self.timeout + wait_s)
        attempt = 0
        while True:
            request = self._http.build_request(method, path, timeout=timeout, **kwargs)
            self.requests_sent += 1
            try:
                response: httpx.Response = yield Send(request, stream)
            except httpx.TransportError as exc:
                delay = self.retry.after_error(attempt, request, exc)
                if delay is None:
                    raise ConnectionFailed(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc
            else:
                delay = self.retry.after_status(attempt, response, submit=submit)
                if delay is None:
                    if response.is_error:
                        yield Read(response)
                        raise error_from_response(response)
                    return response
                yield Close(response)
            yield Sleep(delay)
            attempt += 1

    def _submit_steps(
        self,
        users: Iterable[str] | str,
        start: datetime | str,
        end: datetime | str,
        method: str | None,
        params: Mapping[str, Any] | None,
        group_by: Iterable[str] | None,
        fresh: bool,
        idempotency_key: str | None,
    ) -> Steps[J]:
        """``POST /jobs``, unset options left to the service's defaults, retried safely under one
        ``Idempotency-Key``."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        if fresh:
            headers["Cache-Control"] = "no-cache"
        body: dict[str, Any] = {
            "users": [users] if isinstance(users, str) else list(users),
            "start": _iso(start),
            "end": _iso(end),
        }
        if method is not None:
            body["method"] = method
        if params:
            body["params"] = dict(params)
        if group_by is not None:
            body["group_by"] = list(group_by)
        response = yield from self._call_steps("POST", "/jobs", json=body, headers=headers, submit=True)
        return self._job(response.json(), response)

    def _job_steps(self, job_id: str) -> Steps[J]:
        response = yield from self._call_steps("GET", f"/jobs/{job_id}")
        return self._job(response.json(), response)

    def _jobs_steps(self, status: str | None, page_size: int) -> Stream[J]:
        params: dict[str, Any] = {"limit": page_size}
        if status:
            params["status"] = status
        while True:
            page = (yield from self._call_steps("GET", "/jobs", params=params)).json()
            yield Out([self._job(data) for data in page["jobs"]])
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]


class JobCore(JobState):
    """What ``Job`` and ``AsyncJob`` share: the job's state, and every call on it as steps."""

    #: sessions asked per page when a dropped stream is resumed (the service's largest page)
    page_size = 10_000

    def __init__(self, client: ClientCore[Any], data: dict[str, Any], response: httpx.Response | None = None) -> None:
        super().__init__(data)
        self._client = client
        self._saw(response)

    def _saw(self, response: httpx.Response | None) -> None:
        if response is not None:
            self.retry_after = parse_retry_after(response.headers.get("Retry-After"))
            self.wait_applied = "Preference-Applied" in response.headers

    def _fetch_steps(self, wait_s: int = 0) -> Steps[None]:
        headers = {"Prefer": f"wait={wait_s}"} if wait_s else {}
        response = yield from self._client._call_steps("GET", f"/jobs/{self.id}", headers=headers, wait_s=wait_s)
        self.data = response.json()
        self._saw(response)

    def _refresh_steps(self) -> Steps[Self]:
        yield from self._fetch_steps()
        return self

    def _wait_steps(
        self, timeout: float | None, progress: bool | Show, long_poll: bool, poll_interval: float | None
    ) -> Steps[Self]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with display(progress) as show:
            show(self)
            while not self.done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeout(self, timeout or 0)
                if long_poll:
                    yield from self._fetch_steps(next_wait(remaining, bool(progress)))
                    if not self.done and not self.wait_applied:
                        # the service declined to hold the answer (its cap on waits per key):
                        # poll at its pace rather than spin
                        log.info("job %s: wait not held by the service; polling", self.id)
                        yield Sleep(poll_pause(self.retry_after, poll_interval, remaining))
                else:
                    yield Sleep(poll_pause(self.retry_after, poll_interval, remaining))
                    yield from self._fetch_steps()
                show(self)
        check_outcome(self)
        return self

    def _pages_steps(self, accept: str, user: str | None) -> Stream[bytes]:
        """The sessions' pages in ``accept`` (NDJSON or CSV), following ``Link: rel="next"``; CSV
        keeps the header row of the first page only, so the pages join into the whole answer. A
        page whose answer breaks off is asked again (its URL holds its cursor), under the
        client's ``RetryPolicy``; memory holds one page at a time."""
        url: str | None = f"/jobs/{self.id}/sessions"
        params: dict[str, Any] | None = {"limit": self.page_size, **({"user": user} if user else {})}
        attempt = first = 0
        while url:
            response = yield from self._client._call_steps(
                "GET", url, headers={"Accept": accept}, params=params, stream=True
            )
            try:
                body: bytes = yield Read(response)
            except httpx.TransportError as exc:  # the stream dropped mid-page
                delay = self._client.retry.after_error(attempt, response.request, exc)
                if delay is None:
                    raise ConnectionFailed(f"GET {response.request.url.path}: {type(exc).__name__}: {exc}") from exc
                yield Sleep(delay)
                attempt += 1
                continue
            finally:
                yield Close(response)
            attempt = 0
            yield Out([body if first == 0 or accept != CSV else body.partition(b"\n")[2]])
            first += 1
            url, params = response.links.get("next", {}).get("url"), None

    def _bytes_steps(self, accept: str, user: str | None = None) -> Stream[bytes]:
        """The sessions in ``accept``, as one stream (the fastest: the service writes while this
        reads); when it breaks off, the rest comes page by page (:meth:`_pages_steps`, from the
        start, skipping the bytes already given: the pages join into the same bytes)."""
        given = 0
        params = {"user": user} if user else None
        path = f"/jobs/{self.id}/sessions"
        response = yield from self._client._call_steps(
            "GET", path, headers={"Accept": accept}, params=params, stream=True
        )
        try:
            chunks = yield Chunks(response)
            while (chunk := (yield NextChunk(chunks))) is not None:
                given += len(chunk)
                yield Out([chunk])
            return
        except httpx.TransportError as exc:
            log.info(
                "job %s: the sessions stream broke off after %d bytes (%s): resuming page by page",
                self.id,
                given,
                type(exc).__name__,
            )
        finally:
            yield Close(response)
        yield from each(self._pages_steps(accept, user), Skip(given))

    def _lines_steps(self, user: str | None, parse: Callable[[bytes], T]) -> Stream[T]:
        """What ``parse`` makes of each NDJSON line of the sessions."""
        lines = Lines(parse)
        yield from each(self._bytes_steps(NDJSON, user), lines.feed)
        yield Out(lines.end())

    def _rows_steps(self, user: str | None = None) -> Stream[dict[str, Any]]:
        return self._lines_steps(user, json.loads)

    def _sessions_steps(self, user: str | None) -> Stream[Session]:
        return self._lines_steps(user, lambda line: Session.from_json(json.loads(line)))

    def _stats_steps(self) -> Steps[dict[str, Any]]:
        response = yield from self._client._call_steps("GET", f"/jobs/{self.id}/sessions", params={"limit": 1})
        stats: dict[str, Any] = response.json()["stats"]
        return stats

    def _pandas_steps(self, user: str | None) -> Steps[DataFrame]:
        from .frames import TableBuilder

        builder = TableBuilder()
        yield from drain(self._rows_steps(user), builder.add)
        return builder.to_pandas()

    def _parquet_steps(self, path: str | Path, user: str | None) -> Steps[Path]:
        from .frames import ParquetSink

        with atomic_file(path) as fh, ParquetSink(fh) as sink:
            yield from drain(self._rows_steps(user), sink.add)
        return Path(path)

    def _csv_steps(self, path: str | Path, user: str | None) -> Steps[Path]:
        with atomic_file(path) as fh:
            yield from drain(self._bytes_steps(CSV, user), fh.write)
        return Path(path)

    def _cancel_steps(self) -> Steps[Self]:
        self.data = (yield from self._client._call_steps("POST", f"/jobs/{self.id}/cancel")).json()
        return self

    def _delete_steps(self) -> Steps[None]:
        yield from self._client._call_steps("DELETE", f"/jobs/{self.id}")
