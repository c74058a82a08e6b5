"""Fault injection and the request log."""

from __future__ import annotations

import base64
import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import EsError


@dataclass
class LoggedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes | None  # None when larger than the log's body limit
    status: int = 0
    fault: str | None = None

    def json(self) -> Any:
        return None if not self.body else orjson.loads(self.body)


class Faults:
    """What to break. Every setting is off by default; ``reset()`` turns all off.

    * ``fail_searches(rate, kinds=(429, 503, "reset"), seed=0)``: that share of ``_search``
      requests (PIT, plain and scroll pages) answers 429 ``es_rejected_execution_exception``,
      503 or closes the connection without a response (``"reset"``), drawn from a seeded RNG.
    * ``always(status=503)``: every request answers that status (``"reset"`` also allowed).
    * ``expire_pit_after(pages, times=1)``: a PIT answers 404 ``search_context_missing_exception``
      once it has served ``pages`` pages; applies to the next ``times`` PITs opened.
    * ``require_auth(api_key=..., basic=(user, password))``: a request without one of these
      credentials answers 401 ``security_exception``. ``api_key`` is the encoded key or
      ``(id, key)``.
    * ``forbid()``: every request answers 403 (an authenticated user without the privilege).
    * ``delay(seconds, path_contains="_search")``: sleep before answering matching requests.
    * ``partial_failures(rate, seed=0)``: that share of ``_search`` answers 200 with one failed shard.

    ``injected`` counts the faults actually injected, by kind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.search_failure_rate = 0.0
            self.search_failure_kinds: tuple[Any, ...] = (429, 503, "reset")
            self._rng = random.Random(0)
            self.always_status: int | str | None = None
            self.pit_expire_after_pages: int | None = None
            self.pit_expire_times = 0
            self.api_keys: set[str] = set()
            self.basic: set[str] = set()
            self.auth_required = False
            self.forbidden = False
            self.delay_s = 0.0
            self.delay_path = "_search"
            self.partial_failure_rate = 0.0

    def fail_searches(self, rate: float, kinds: Iterable[Any] = (429, 503, "reset"), seed: int = 0) -> None:
        with self._lock:
            self.search_failure_rate = float(rate)
            self.search_failure_kinds = tuple(kinds)
            self._rng = random.Random(seed)

    def always(self, status: int | str | None = 503) -> None:
        self.always_status = status

    def expire_pit_after(self, pages: int, times: int = 1) -> None:
        self.pit_expire_after_pages, self.pit_expire_times = pages, times

    def require_auth(self, api_key: str | tuple[str, str] | None = None, basic: tuple[str, str] | None = None) -> None:
        if isinstance(api_key, tuple):
            api_key = base64.b64encode(f"{api_key[0]}:{api_key[1]}".encode()).decode()
        if api_key:
            self.api_keys.add(api_key)
        if basic:
            self.basic.add(base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode())
        self.auth_required = True

    def forbid(self, on: bool = True) -> None:
        self.forbidden = on

    def delay(self, seconds: float, path_contains: str = "_search") -> None:
        self.delay_s, self.delay_path = seconds, path_contains

    def partial_failures(self, rate: float, seed: int = 0) -> None:
        with self._lock:
            self.partial_failure_rate = rate
            self._rng = random.Random(seed)

    # -- used by the server
    def draw_search_failure(self) -> Any:
        with self._lock:
            if self.search_failure_rate and self._rng.random() < self.search_failure_rate:
                return self._rng.choice(self.search_failure_kinds)
        return None

    def draw_partial_failure(self) -> bool:
        with self._lock:
            return bool(self.partial_failure_rate) and self._rng.random() < self.partial_failure_rate

    def authorized(self, header: str | None) -> bool:
        if not self.auth_required:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "apikey":
            return value.strip() in self.api_keys
        if scheme.lower() == "basic":
            return value.strip() in self.basic
        return False

    def count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1


class _Reset(Exception):
    """Close the connection without answering."""


def _status_error(status: int) -> EsError:
    if status == 429:
        return EsError(
            429,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
            "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=1]",
        )
    if status == 503:
        return EsError(
            503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];"
        )
    if status == 401:
        return EsError(401, "security_exception", "unable to authenticate user for REST request")
    return EsError(status, "status_exception", f"injected HTTP {status}")
