"""Retrying Elasticsearch requests: exponential backoff with full jitter, bounded in attempts and
in total time, each retry counted under its operation's stable code (``worker/metrics.py``)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..metrics import EsOperation, record_es_retry
from .base import TransientSourceError
from .es_errors import JUDGED, transient_reason

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: exponential backoff with full jitter, twice bounded.

    The delay before attempt ``k + 1`` is uniform in ``[0, min(max_delay_s, base_delay_s * 2**(k-1))]``
    ("full jitter": concurrent workers hit by the same overload do not come back in lockstep).
    Giving up happens after ``max_attempts`` attempts or once ``max_elapsed_s`` would be exceeded,
    whichever comes first; a request's own timeout is also capped by the time left.
    """

    max_attempts: int = 6
    max_elapsed_s: float = 60.0
    base_delay_s: float = 0.5
    max_delay_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_elapsed_s <= 0 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("retry durations must be positive")


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Operation:
    """What a request does: ``code``, the stable metric label; ``what``, the words of the messages
    ("could not {what} index [events]")."""

    code: EsOperation
    what: str


OPEN_PIT = Operation("open_pit", "open a point in time on")
SEARCH = Operation("search", "search")
CLOSE_PIT = Operation("close_pit", "close the point in time on")
DAY_COUNTS = Operation("search", "count the documents per user and day of")  # a search with aggregations


class Aborted(Exception):
    """Another slice failed or stopped: this one ends quietly."""


class Retrier:
    """Sends requests to one index, retrying transient failures as ``policy`` says.

    ``sleep``, ``clock`` and ``rng`` are injectable for tests; the random generator is shared by
    the slice threads of one read, behind a lock.
    """

    def __init__(
        self,
        index: str,
        policy: RetryPolicy = DEFAULT_RETRY,
        *,
        request_timeout_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.index, self.policy, self.request_timeout_s = index, policy, request_timeout_s
        self._sleep, self._clock = sleep, clock
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    def request_options(self, remaining_s: float) -> dict[str, Any]:
        timeout = remaining_s if self.request_timeout_s is None else min(self.request_timeout_s, remaining_s)
        return {"request_timeout": max(timeout, 0.5), "max_retries": 0}

    def call(self, op: Operation, fn: Callable[[dict[str, Any]], T], *, abort: threading.Event | None = None) -> T:
        """``fn(options)`` with transient failures retried; see :class:`RetryPolicy`.

        Raises :class:`TransientSourceError` (kind ``unavailable``) once the policy gives up,
        what :func:`~worker.sources.es_errors.transient_reason` raises for a permanent failure,
        and :class:`Aborted` when ``abort`` is set between attempts.
        """
        policy = self.policy
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            elapsed = self._clock() - started
            try:
                return fn(self.request_options(policy.max_elapsed_s - elapsed))
            except JUDGED as exc:
                reason = transient_reason(exc, op.what, self.index)
            elapsed = self._clock() - started
            if abort is not None and abort.is_set():
                raise Aborted()
            delay = self.backoff(attempt)
            if attempt >= policy.max_attempts or elapsed + delay >= policy.max_elapsed_s:
                raise TransientSourceError(
                    f"Elasticsearch unavailable: could not {op.what} index [{self.index}] after "
                    f"{attempt} attempt(s) in {elapsed:.1f}s; last error: {reason}",
                    kind="unavailable",
                )
            log.info(
                "Elasticsearch %s on [%s] failed (%s); retry %d in %.2fs", op.what, self.index, reason, attempt, delay
            )
            record_es_retry(op.code)
            self._sleep(delay)

    def backoff(self, attempt: int) -> float:
        cap = min(self.policy.max_delay_s, self.policy.base_delay_s * (2 ** (attempt - 1)))
        with self._rng_lock:
            return self._rng.uniform(0.0, cap)
