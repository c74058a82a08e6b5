"""When to retry a request, and how long to wait first: shared by the sync and async clients.

Retried: connection errors (a submit too, since it always carries an ``Idempotency-Key``),
502/503/504 and 429, and for a submit the 409 of an ``Idempotency-Key`` still in use. The delay
is the service's ``Retry-After`` when it gives one, else exponential backoff with full jitter.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from dataclasses import dataclass

import httpx

log = logging.getLogger("sessionizer_client")

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP-date; ``None`` if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; backoff ``backoff_s * 2**n`` with full jitter, capped at ``max_delay_s``."""

    attempts: int = 6
    backoff_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        given = parse_retry_after(retry_after)
        if given is not None:
            return min(given, self.max_delay_s)
        return random.uniform(0, min(self.max_delay_s, self.backoff_s * 2**attempt))

    def after_status(self, attempt: int, response: httpx.Response, *, submit: bool = False) -> float | None:
        """Seconds to wait before retrying this answer, or ``None`` to keep it."""
        code = response.status_code
        if attempt + 1 >= self.attempts or not (code in RETRY_STATUSES or (submit and code == 409)):
            return None
        delay = self.delay(attempt, response.headers.get("Retry-After"))
        log.info(
            "%s %s answered %d: retry %d in %.2f s",
            response.request.method,
            response.request.url.path,
            code,
            attempt + 1,
            delay,
        )
        return delay

    def after_error(self, attempt: int, request: httpx.Request, exc: httpx.TransportError) -> float | None:
        """Seconds to wait before retrying after a transport error, or ``None`` to give up."""
        if attempt + 1 >= self.attempts or isinstance(exc, httpx.UnsupportedProtocol):
            return None
        delay = self.delay(attempt)
        log.info(
            "%s %s: %s: retry %d in %.2f s", request.method, request.url.path, type(exc).__name__, attempt + 1, delay
        )
        return delay
