"""Typed errors, built from the service's problem+json answers (RFC 9457)."""

from __future__ import annotations

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
        error = job.error or {}
        self.type = str(error.get("type") or "unknown")
        self.reason = str(error.get("message") or "no reason recorded")
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
    400: InvalidRequest, 413: InvalidRequest, 415: InvalidRequest, 422: InvalidRequest,
    401: Unauthorized, 404: NotFound, 409: Conflict, 429: RateLimited,
    502: ServiceUnavailable, 503: ServiceUnavailable, 504: ServiceUnavailable,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The typed error for an error answer (its body must have been read)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):  # a proxy's HTML page, say: keep a short trace of it
        body = {"title": response.reason_phrase or f"HTTP {response.status_code}", "detail": response.text[:200]}
    error = _BY_STATUS.get(response.status_code, APIError)(response.status_code, body)
    if isinstance(error, (RateLimited, ServiceUnavailable)):
        error.retry_after = _retry_after(response)
    return error
