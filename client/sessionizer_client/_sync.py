"""The synchronous client: ``Client`` and the ``Job`` it hands out."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
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


class Client:
    """A Sessionizer service. ``url``/``api_key`` default to ``SESSIONIZER_URL``/``SESSIONIZER_API_KEY``.

    Every call is retried on connection errors, 429 and 502/503/504 (honouring ``Retry-After``);
    ``requests_sent`` counts the HTTP requests made, retries included.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, key = resolve(url, api_key)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.requests_sent = 0
        headers = {"User-Agent": f"sessionizer-client/{__version__}"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            event_hooks={"request": [self._count]},
        )

    def _count(self, request: httpx.Request) -> None:
        self.requests_sent += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self, method: str, path: str, *, stream: bool = False, submit: bool = False, wait_s: int = 0, **kwargs: Any
    ) -> httpx.Response:
        """One call, retried as ``self.retry`` says; an error answer raises its typed error."""
        timeout = httpx.Timeout(self.timeout, read=self.timeout + wait_s)
        attempt = 0
        while True:
            request = self._http.build_request(method, path, timeout=timeout, **kwargs)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.after_error(attempt, request, exc)
                if delay is None:
                    raise ConnectionFailed(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc
            else:
                delay = self.retry.after_status(attempt, response, submit=submit)
                if delay is None:
                    if response.is_error:
                        response.read()
                        response.close()
                        raise error_from_response(response)
                    return response
                response.close()
            time.sleep(delay)
            attempt += 1

    def _job_data(self, job_id: str, wait_s: int = 0) -> tuple[dict[str, Any], httpx.Response]:
        headers = {"Prefer": f"wait={wait_s}"} if wait_s else {}
        response = self._send("GET", f"/jobs/{job_id}", headers=headers, wait_s=wait_s)
        return response.json(), response

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
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        if fresh:
            headers["Cache-Control"] = "no-cache"
        body = submit_body(users, start, end, method, params, group_by)
        response = self._send("POST", "/jobs", json=body, headers=headers, submit=True)
        return Job(self, response.json(), response)

    def job(self, job_id: str) -> Job:
        """A job by id (its continuation token), from this process or any other."""
        data, response = self._job_data(job_id)
        return Job(self, data, response)

    def jobs(self, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job of this API key, newest first, following ``next_cursor`` page after page."""
        params: dict[str, Any] = {"limit": page_size}
        if status:
            params["status"] = status
        while True:
            page = self._send("GET", "/jobs", params=params).json()
            for data in page["jobs"]:
                yield Job(self, data)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]


class Job(JobState):
    """A submitted job: poll it, wait for it, read its sessions."""

    def __init__(self, client: Client, data: dict[str, Any], response: httpx.Response | None = None) -> None:
        super().__init__(data)
        self._client = client
        self._saw(response)

    def _saw(self, response: httpx.Response | None) -> None:
        if response is not None:
            self.retry_after = parse_retry_after(response.headers.get("Retry-After"))
            self.wait_applied = "Preference-Applied" in response.headers

    def _fetch(self, wait_s: int = 0) -> None:
        self.data, response = self._client._job_data(self.id, wait_s)
        self._saw(response)

    def refresh(self) -> Job:
        self._fetch()
        return self

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
        deadline = None if timeout is None else time.monotonic() + timeout
        with display(progress) as show:
            show(self)
            while not self.done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeout(self, timeout or 0)
                if long_poll:
                    self._fetch(next_wait(remaining, bool(progress)))
                    if not self.done and not self.wait_applied:
                        # the service declined to hold the answer (its cap on waits per key):
                        # poll at its pace rather than spin
                        log.info("job %s: wait not held by the service; polling", self.id)
                        time.sleep(poll_pause(self.retry_after, poll_interval, remaining))
                else:
                    time.sleep(poll_pause(self.retry_after, poll_interval, remaining))
                    self._fetch()
                show(self)
        check_outcome(self)
        return self

    #: sessions asked per page when a dropped stream is resumed (the service's largest page)
    page_size = 10_000

    def _pages(self, accept: str, user: str | None) -> Iterator[bytes]:
        """The sessions' pages in ``accept`` (NDJSON or CSV), following ``Link: rel="next"``; CSV
        keeps the header row of the first page only, so the pages join into the whole answer. A
        page whose answer breaks off is asked again (its URL holds its cursor), under the
        client's ``RetryPolicy``; memory holds one page at a time."""
        url: str | None = f"/jobs/{self.id}/sessions"
        params: dict[str, Any] | None = {"limit": self.page_size, **({"user": user} if user else {})}
        attempt = first = 0
        while url:
            response = self._client._send("GET", url, headers={"Accept": accept}, params=params, stream=True)
            try:
                body = response.read()
            except httpx.TransportError as exc:  # the stream dropped mid-page
                delay = self._client.retry.after_error(attempt, response.request, exc)
                if delay is None:
                    raise ConnectionFailed(f"GET {response.request.url.path}: {type(exc).__name__}: {exc}") from exc
                time.sleep(delay)
                attempt += 1
                continue
            finally:
                response.close()
            attempt = 0
            yield body if first == 0 or accept != CSV else body.partition(b"\n")[2]
            first += 1
            url, params = response.links.get("next", {}).get("url"), None

    def _iter_bytes(self, accept: str, user: str | None = None) -> Iterator[bytes]:
        """The sessions in ``accept``, as one stream (the fastest: the service writes while this
        reads); when it breaks off, the rest comes page by page (:meth:`_pages`, from the start,
        skipping the bytes already given: the pages join into the same bytes)."""
        given = 0
        params = {"user": user} if user else None
        response = self._client._send(
            "GET", f"/jobs/{self.id}/sessions", headers={"Accept": accept}, params=params, stream=True
        )
        try:
            for chunk in response.iter_bytes():
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
            response.close()
        for body in self._pages(accept, user):
            if given >= len(body):
                given -= len(body)
                continue
            yield body[given:]
            given = 0

    def _rows(self, user: str | None = None) -> Iterator[dict[str, Any]]:
        rest = b""
        for chunk in self._iter_bytes(NDJSON, user):
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                if line:
                    yield json.loads(line)
        if rest.strip():
            yield json.loads(rest)

    def sessions(self, user: str | None = None) -> Iterator[Session]:
        """The sessions, streamed (NDJSON): memory stays flat however many there are, and a stream
        that breaks off is resumed (page by page, following ``Link``) instead of raising."""
        for row in self._rows(user):
            yield Session.from_json(row)

    def stats(self) -> dict[str, Any]:
        """The result's counts: users, events, invalid_events, noise_events, sessions."""
        return self._client._send("GET", f"/jobs/{self.id}/sessions", params={"limit": 1}).json()["stats"]

    def to_pandas(self, user: str | None = None) -> pandas.DataFrame:
        """A DataFrame: UTC datetimes, categorical user and instance, integer events, booleans."""
        from .frames import TableBuilder

        builder = TableBuilder()
        for row in self._rows(user):
            builder.add(row)
        return builder.to_pandas()

    def to_parquet(self, path: str | Path, user: str | None = None) -> Path:
        """Stream the sessions into a Parquet file (written in row groups; memory stays flat)."""
        from .frames import ParquetSink

        with atomic_file(path) as fh, ParquetSink(fh) as sink:
            for row in self._rows(user):
                sink.add(row)
        return Path(path)

    def to_csv(self, path: str | Path, user: str | None = None) -> Path:
        """The service's CSV (a header row, then one session a row), streamed to a file (resumed
        if the stream breaks off)."""
        with atomic_file(path) as fh:
            for chunk in self._iter_bytes(CSV, user):
                fh.write(chunk)
        return Path(path)

    def cancel(self) -> Job:
        """Ask the service to cancel the job; one that already succeeded or failed raises
        ``Conflict`` (``.job_status``), a cancelled one stays cancelled."""
        self.data = self._client._send("POST", f"/jobs/{self.id}/cancel").json()
        return self

    def delete(self) -> None:
        """Cancel the job if it runs, then forget it and its sessions (later reads: ``NotFound``)."""
        self._client._send("DELETE", f"/jobs/{self.id}")
