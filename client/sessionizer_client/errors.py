"""Typed errors, built from the service's problem+json answers (RFC 9457)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .models import JobLike


class SessionizerError(Exception):
    """Base of every error this package raises."""


class ConnectionFailed(SessionizerError):
    """The service could not be reached (after the retries)."""


class APIError(SessionizerError):
    """The service answered with an error status; ``problem`` is its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.title = str(problem.get("title") or f"HTTP {status}")
        self.detail = str(problem.get("detail") or self.title)
        super().__init__(f"{status} {self.title}: {self.detail}")


class InvalidRequest(APIError):
    """400, 413, 415 or 422: ``errors`` maps each refused field to its messages."""

    @property
    def errors(self) -> dict[str, Any]:
        errors = self.problem.get("errors")
        return errors if isinstance(errors, dict) else {}


class Unauthorized(APIError):
    """401: no API key, or an unknown one."""


class NotFound(APIError):
    """404: a job never issued, expired, deleted, or another key's."""


class Conflict(APIError):
    """409: e.g. the sessions of a job that has not succeeded (``job_status``, ``error``)."""

    @property
    def job_status(self) -> str | None:
        return self.problem.get("job_status")


def _retry_after(response: httpx.Response) -> float | None:
    from ._retry import parse_retry_after

    return parse_retry_after(response.headers.get("Retry-After"))


class RateLimited(APIError):
    """429: the key's rate limit or concurrent-jobs cap; ``retry_after`` in seconds."""

    retry_after: float | None = None


class ServiceUnavailable(APIError):
    """502, 503 or 504 (after the retries); ``retry_after`` in seconds when the service said."""

    retry_after: float | None = None


class JobError(SessionizerError):
    """The job ended without sessions; ``type`` and ``reason`` are the service's."""

    def __init__(self, job: JobLike) -> None:
        self.job = job
        failure = job.record.error
        self.type = failure.type if failure else "unknown"
        self.reason = failure.message if failure else "no reason recorded"
        super().__init__(f"job {job.id} {job.status}: {self.reason} ({self.type})")


class JobFailed(JobError):
    """The job failed."""


class JobCancelled(JobError):
    """The job was cancelled."""


class WaitTimeout(SessionizerError, TimeoutError):
    """``wait(timeout)`` ran out; the job goes on (it is not cancelled)."""

    def __init__(self, job: JobLike, timeout: float) -> None:
        self.job = job
        super().__init__(f"job {job.id} still {job.status} after {timeout:g} s (it goes on; wait again to resume)")


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequest,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    502: ServiceUnavailable,
    503: ServiceUnavailable,
    504: ServiceUnavailable,
}


class _Text(HTMLParser):
    """The text of an HTML page: its ``<title>``, and its visible words (no script nor style)."""

    def __init__(self) -> None:
        super().__init__()
        self.title: list[str] = []
        self.words: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._in:
            del self._in[len(self._in) - 1 - self._in[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if "script" in self._in or "style" in self._in:
            return
        (self.title if "title" in self._in else self.words).extend(data.split())


def _gist(response: httpx.Response, limit: int = 160) -> str:
    """A one-line summary of a body that is not problem+json (an HTML error page is reduced to its text)."""
    text = response.text
    if "html" in response.headers.get("Content-Type", "") or text.lstrip()[:1] == "<":
        page = _Text()
        page.feed(text)
        page.close()
        title, words = " ".join(page.title), " ".join(page.words)
        text = f"{title} ({words})" if title and words and not words.startswith(title) else words or title
        text = text or "an HTML page without text"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_from_response(response: httpx.Response) -> APIError:
    """The typed error for an error answer (its body must have been read)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):  # a proxy's HTML page, say: its gist, not its markup
        body = {"title": response.reason_phrase or f"HTTP {response.status_code}", "detail": _gist(response)}
    error = _BY_STATUS.get(response.status_code, APIError)(response.status_code, body)
    if isinstance(error, (RateLimited, ServiceUnavailable)):
        error.retry_after = _retry_after(response)
    return error
