"""Reading usage events from Elasticsearch: point in time + ``search_after``, fast and exact.

One :meth:`ElasticsearchSource.read_events` call opens a point in time (PIT) on the index, pages
through every document of the wanted users in the time range (sort ``["_doc", "_shard_doc"]``,
``track_total_hits: false``, ``_source`` limited to the four fields, ``filter_path`` trimming the
response), parses each page straight into an :class:`EventAccumulator` and closes the PIT in a
``finally``. The protocol facts it follows are in ``docs/elasticsearch.md``.

Speed: the client is built with orjson (de)serialisers, so a page of 10,000 hits is one
``orjson.loads`` and one ``add_many`` over the ``_source`` dicts; no per-event Python object
outlives its page.

Faults: every request goes through :meth:`ElasticsearchSource._call`, which retries transient
failures (429, 502, 503, 504, connection errors, timeouts) with exponential backoff and full
jitter, bounded in attempts and in total time, then raises :class:`TransientSourceError`.
Permanent failures (missing index, credentials, bad query) raise :class:`PermanentSourceError`
at once. An expired PIT restarts the whole read with a fresh PIT and a fresh accumulator, so the
result stays exact. PIT searches are idempotent, so retrying a page never skips or repeats one.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import elastic_transport
import urllib3
from elasticsearch import ApiError, Elasticsearch, UnsupportedProductError
from elasticsearch.serializer import OrjsonSerializer

from sessionizer.settings import ElasticsearchSettings, Secret, Settings

from ..metrics import record_es_retry
from .base import OnProgress, PermanentSourceError, ShouldStop, Stopped, TransientSourceError
from .documents import EventAccumulator, FieldNames, gc_paused
from .es_node import MeasuredNode

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
SORT = ["_doc", "_shard_doc"]
# `_shards.failed` rides along so that a partial result (a shard failed) is never taken as complete.
FILTER_PATH = "pit_id,hits.hits._source,hits.hits.sort,_shards.failed"
# day_counts: buckets per page (10,000: well under search.max_buckets, 65,536) and the answer's trim
DAY_COUNTS_PAGE = 10_000
DAY_COUNTS_FILTER_PATH = (
    "aggregations.per_user_day.after_key,aggregations.per_user_day.buckets.key,"
    "aggregations.per_user_day.buckets.doc_count,_shards.failed"
)


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


class _PitExpired(Exception):
    """The point in time is gone (404 search_context_missing_exception): start over."""


class _Abort(Exception):
    """Another slice failed or stopped: this one ends quietly."""


def build_client(
    url: str,
    *,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    request_timeout_s: float = 30.0,
    verify_certs: bool = True,
    connections_per_node: int = 10,
) -> Elasticsearch:
    """The official client as this project uses it: orjson on the wire, no transport retries.

    The transport would retry 429/502/503/504 and connection errors up to 3 times *immediately*
    (no backoff), which hammers a cluster that is shedding load, and its retries would count
    against nothing we control. ``max_retries=0`` hands every retry decision to
    :class:`ElasticsearchSource` (backoff with jitter, bounded attempts and time).
    """
    auth: dict[str, Any] = {}
    if api_key:
        auth["api_key"] = api_key
    elif username:
        auth["basic_auth"] = (username, password or "")
    return Elasticsearch(
        url,
        serializer=OrjsonSerializer(),
        request_timeout=request_timeout_s,
        verify_certs=verify_certs,
        max_retries=0,
        retry_on_timeout=False,
        connections_per_node=connections_per_node,
        node_class=MeasuredNode,  # counts and times every request (worker/metrics.py)
        **auth,
    )


class ElasticsearchSource:
    """An :class:`~worker.sources.base.EventSource` over one Elasticsearch index.

    Parameters
    ----------
    client : Elasticsearch
        The official client (see :func:`build_client`; any client works, but without orjson
        serialisers the pages decode about twice slower).
    index : str
        Index (or alias, or pattern) holding the events.
    names : FieldNames
        Where the timestamp, user, screen and instance live in a document.
    page_size : int
        Hits per page, up to the index's ``max_result_window`` (10,000 by default).
    slices : int
        PIT slices read concurrently (threads, one shared accumulator behind a lock); 1 reads
        one chain of pages. Worth it when the cluster's time per page dominates (large units on
        a multi-shard index): it overlaps server work; parsing itself stays on one core.
    keep_alive : str
        PIT keep-alive; only needs to cover the gap between two pages (backoff included).
    retry : RetryPolicy
        Bounds on retrying transient failures.
    max_restarts : int
        How many times an expired PIT may restart the read before giving up (transient).
    request_timeout_s : float or None
        Per-request timeout (capped by the retry time left); None keeps the client's.
    sleep, rng
        Injectable for tests.
    """

    def __init__(
        self,
        client: Elasticsearch,
        index: str,
        names: FieldNames = FieldNames(),
        page_size: int = 10_000,
        *,
        slices: int = 1,
        keep_alive: str = "2m",
        retry: RetryPolicy = RetryPolicy(),
        max_restarts: int = 3,
        request_timeout_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= page_size <= 10_000:
            raise ValueError("page_size must be between 1 and 10000")
        if slices < 1:
            raise ValueError("slices must be at least 1")
        self.client = client
        self.index = index
        self.names = names
        self.page_size = page_size
        self.slices = slices
        self.keep_alive = keep_alive
        self.retry = retry
        self.max_restarts = max_restarts
        self.request_timeout_s = request_timeout_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ElasticsearchSource(index={self.index!r}, page_size={self.page_size}, slices={self.slices})"

    # ------------------------------------------------------------------ public
    def read_events(
        self,
        users: list[str],
        lo_ms: int,
        hi_ms: int,
        *,
        should_stop: ShouldStop | None = None,
        on_progress: OnProgress | None = None,
        since_ms: int | None = None,
    ) -> EventAccumulator:
        """Every event of ``users`` with ``lo_ms <= t <= hi_ms`` (both inclusive), read once
        (all of it from the cluster: ``since_ms`` changes nothing here)."""
        wanted = sorted(set(users))
        restarts = 0
        while True:
            acc = EventAccumulator(self.names, users=wanted, lo_ms=lo_ms, hi_ms=hi_ms)
            if not wanted or lo_ms > hi_ms:
                return acc
            try:
                self._read_once(acc, self.query(wanted, lo_ms, hi_ms), should_stop, on_progress)
                return acc
            except _PitExpired:
                restarts += 1
                if restarts > self.max_restarts:
                    raise TransientSourceError(
                        f"Elasticsearch point in time on index [{self.index}] expired {restarts} times "
                        f"during one read (keep_alive {self.keep_alive}); giving up",
                        kind="pit_expired",
                    ) from None
                log.warning(
                    "point in time on index [%s] expired; restarting the read (%d/%d)",
                    self.index,
                    restarts,
                    self.max_restarts,
                )

    def query(self, users: list[str], lo_ms: int, hi_ms: int) -> dict[str, Any]:
        """The filter: the users' terms and the inclusive time range, in epoch ms (exact, no rounding)."""
        return {
            "bool": {
                "filter": [
                    {"terms": {self.names.user: users}},
                    {"range": {self.names.timestamp: {"gte": lo_ms, "lte": hi_ms, "format": "epoch_millis"}}},
                ]
            }
        }

    def day_counts(self, users: list[str], lo_ms: int, hi_ms: int) -> dict[tuple[str, int], int]:
        """Documents per (user, UTC day start in epoch ms) among ``users`` with ``lo_ms <= t <= hi_ms``.

        One ``size: 0`` search with :meth:`query`'s filter and a ``composite`` aggregation (a
        ``terms`` source on the user field, a ``date_histogram`` source on the timestamp by UTC
        calendar day), paged by ``after_key`` until a page has no bucket; every page goes through
        :meth:`_call` (same retries and errors as the reads). Days without documents are absent.
        """
        wanted = sorted(set(users))
        counts: dict[tuple[str, int], int] = {}
        if not wanted or lo_ms > hi_ms:
            return counts
        composite: dict[str, Any] = {
            "size": DAY_COUNTS_PAGE,
            "sources": [
                {"user": {"terms": {"field": self.names.user}}},
                {
                    "day": {
                        "date_histogram": {"field": self.names.timestamp, "calendar_interval": "1d", "time_zone": "UTC"}
                    }
                },
            ],
        }
        params: dict[str, Any] = {
            "index": self.index,
            "size": 0,
            "track_total_hits": False,
            "query": self.query(wanted, lo_ms, hi_ms),
            "aggs": {"per_user_day": {"composite": composite}},
            "filter_path": DAY_COUNTS_FILTER_PATH,
        }

        def page(opts: dict[str, Any]) -> dict[str, Any]:
            resp = self.client.options(**opts).search(**params).body
            if resp.get("_shards", {}).get("failed"):  # counts from the surviving shards only: not the total
                raise TransientSourceError("some shards failed (partial result)", kind="partial_result")
            return resp

        while True:
            agg = self._call("count the documents per user and day of", page).get("aggregations", {})
            agg = agg.get("per_user_day", {})
            buckets = agg.get("buckets") or []
            for bucket in buckets:
                key = bucket["key"]
                counts[(str(key["user"]), int(key["day"]))] = int(bucket["doc_count"])
            after = agg.get("after_key")
            if not buckets or after is None:
                return counts
            composite["after"] = after

    # ------------------------------------------------------------------ one attempt
    def _read_once(
        self,
        acc: EventAccumulator,
        query: dict[str, Any],
        should_stop: ShouldStop | None,
        on_progress: OnProgress | None,
    ) -> None:
        stop = should_stop or (lambda: False)
        pit_id = self._call(
            "open a point in time on",
            lambda opts: self.client.options(**opts).open_point_in_time(index=self.index, keep_alive=self.keep_alive)[
                "id"
            ],
        )
        pits = _PitIds(pit_id)
        try:
            if self.slices == 1:
                self._scan(pits, 0, query, None, acc, None, stop, on_progress, None)
            else:
                self._scan_slices(pits, query, acc, stop, on_progress)
        finally:
            self._close(pits.newest)

    def _scan_slices(
        self,
        pits: _PitIds,
        query: dict[str, Any],
        acc: EventAccumulator,
        should_stop: ShouldStop,
        on_progress: OnProgress | None,
    ) -> None:
        lock = threading.Lock()
        abort = threading.Event()
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                self._scan(pits, i, query, {"id": i, "max": self.slices}, acc, lock, should_stop, on_progress, abort)
            except _Abort:
                pass
            except BaseException as exc:  # handed to the caller below
                with lock:
                    errors.append(exc)
                abort.set()

        threads = [
            threading.Thread(target=run, args=(i,), name=f"es-slice-{i}", daemon=True) for i in range(self.slices)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            # a stop or an expired PIT wins over the collateral errors of other slices
            for kind in (Stopped, _PitExpired, PermanentSourceError):
                for exc in errors:
                    if isinstance(exc, kind):
                        raise exc
            raise errors[0]

    def _scan(
        self,
        pits: _PitIds,
        chain: int,
        query: dict[str, Any],
        slice_: dict[str, int] | None,
        acc: EventAccumulator,
        lock: threading.Lock | None,
        should_stop: ShouldStop,
        on_progress: OnProgress | None,
        abort: threading.Event | None,
    ) -> None:
        """Read one chain of pages (the whole PIT, or one slice) into ``acc``."""
        params: dict[str, Any] = {
            "size": self.page_size,
            "sort": SORT,
            "track_total_hits": False,
            "query": query,
            "source": self.names.source_fields,  # the request body's `_source`
            "filter_path": FILTER_PATH,
        }
        if slice_ is not None:
            params["slice"] = slice_
        page_size = self.page_size

        def page(opts: dict[str, Any]) -> dict[str, Any]:
            resp = self.client.options(**opts).search(**params).body
            new_id = resp.get("pit_id")  # absent when filter_path leaves nothing (zero hits)
            if new_id:
                pits.set(chain, new_id)
            if resp.get("_shards", {}).get("failed"):
                # a shard failed, so the page is incomplete; the same request is safe to retry
                raise TransientSourceError("some shards failed (partial result)", kind="partial_result")
            return resp

        while True:
            if abort is not None and abort.is_set():
                raise _Abort()
            if should_stop():
                raise Stopped()
            params["pit"] = {"id": pits.get(chain), "keep_alive": self.keep_alive}
            with gc_paused():
                resp = self._call("search", page, abort=abort)
                hits = resp.get("hits", {}).get("hits") or []
                sources = [h.get("_source") for h in hits]
                if lock is None:
                    acc.add_many(sources)
                else:
                    with lock:
                        acc.add_many(sources)
                n_hits = len(hits)
                last_sort = hits[-1]["sort"] if n_hits else None
                del resp, hits, sources  # freed here, by reference counting
            if on_progress is not None:
                if lock is None:
                    on_progress(acc.scanned)
                else:
                    with lock:
                        on_progress(acc.scanned)
            if n_hits < page_size:
                return  # a short page is the last one: saves a round trip
            params["search_after"] = last_sort

    def _close(self, pit_id: str) -> None:
        """Close the PIT; a failure is logged, never raised (the PIT then expires on its own).

        Transient failures are retried like any request: a pooled connection that the server
        dropped (after a reset, say) fails the DELETE before it is sent, and a PIT left open
        pins segments and heap on the cluster until its keep-alive ends.
        """

        def close(opts: dict[str, Any]) -> Any:
            try:
                return self.client.options(**opts).close_point_in_time(id=pit_id)
            except ApiError as exc:
                if exc.meta.status == 404:  # already gone (expired): nothing left to free
                    log.debug("point in time on index [%s] already gone when closing it", self.index)
                    return None
                raise

        try:
            self._call("close the point in time on", close)
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.warning("could not close the point in time on index [%s]: %s", self.index, _short(exc))

    # ------------------------------------------------------------------ retries
    def _request_options(self, remaining_s: float) -> dict[str, Any]:
        timeout = remaining_s if self.request_timeout_s is None else min(self.request_timeout_s, remaining_s)
        return {"request_timeout": max(timeout, 0.5), "max_retries": 0}

    def _call(self, what: str, fn: Callable[[dict[str, Any]], T], *, abort: threading.Event | None = None) -> T:
        """``fn(options)`` with transient failures retried; see :class:`RetryPolicy`."""
        policy = self.retry
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            elapsed = time.monotonic() - started
            try:
                return fn(self._request_options(policy.max_elapsed_s - elapsed))
            except TransientSourceError as exc:
                reason = str(exc)
            except ApiError as exc:
                reason = self._classify(what, exc)
            except UnsupportedProductError:
                raise PermanentSourceError(
                    "the server at the configured Elasticsearch URL is not Elasticsearch (no X-Elastic-Product header)",
                    kind="not_elasticsearch",
                ) from None
            except elastic_transport.TlsError as exc:
                raise PermanentSourceError(
                    f"TLS failure talking to Elasticsearch ({type(exc).__name__}); check the URL, "
                    f"certificates and verify_certs",
                    kind="tls",
                ) from None
            except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
                _raise_if_not_network(exc)
                reason = f"{type(exc).__name__}: {_short(exc)}"
            except elastic_transport.SerializationError as exc:  # a garbled answer: worth another try
                reason = f"{type(exc).__name__}: {_short(exc)}"
            elapsed = time.monotonic() - started
            if abort is not None and abort.is_set():
                raise _Abort()
            delay = self._backoff(attempt)
            if attempt >= policy.max_attempts or elapsed + delay >= policy.max_elapsed_s:
                raise TransientSourceError(
                    f"Elasticsearch unavailable: could not {what} index [{self.index}] after "
                    f"{attempt} attempt(s) in {elapsed:.1f}s; last error: {reason}",
                    kind="unavailable",
                )
            log.info(
                "Elasticsearch %s on [%s] failed (%s); retry %d in %.2fs", what, self.index, reason, attempt, delay
            )
            record_es_retry(what)
            self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.retry.max_delay_s, self.retry.base_delay_s * (2 ** (attempt - 1)))
        with self._rng_lock:
            return self._rng.uniform(0.0, cap)

    def _classify(self, what: str, exc: ApiError) -> str:
        """A transient reason to retry; raise for anything else."""
        status = exc.meta.status
        types = _error_types(exc.body)
        if status in TRANSIENT_STATUSES:
            return f"HTTP {status} {types[0] if types else ''}".strip()
        if "search_context_missing_exception" in types:
            raise _PitExpired()
        if status == 404 and ("index_not_found_exception" in types or not types):
            raise PermanentSourceError(f"index [{self.index}] not found", kind="index_not_found") from None
        if status == 401:
            raise PermanentSourceError(
                "Elasticsearch refused the credentials (HTTP 401); check ELASTICSEARCH_API_KEY or "
                "ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD",
                kind="unauthorized",
            ) from None
        if status == 403:
            raise PermanentSourceError(
                f"the Elasticsearch user may not read index [{self.index}] (HTTP 403)", kind="forbidden"
            ) from None
        if status == 400:
            raise PermanentSourceError(
                f"Elasticsearch rejected the request to {what} index [{self.index}] (HTTP 400 "
                f"{'/'.join(types[:2])}): {_reason(exc.body)}",
                kind="bad_request",
            ) from None
        raise PermanentSourceError(
            f"Elasticsearch failed to {what} index [{self.index}] (HTTP {status} {'/'.join(types[:2])}): "
            f"{_reason(exc.body)}",
            kind="elasticsearch_error",
        ) from None


class _PitIds:
    """The newest PIT id of each chain (slices each get their own newest id back)."""

    def __init__(self, first: str) -> None:
        self._first = first
        self._ids: dict[int, str] = {}
        self.newest = first

    def get(self, chain: int) -> str:
        return self._ids.get(chain, self._first)

    def set(self, chain: int, pit_id: str) -> None:
        self._ids[chain] = pit_id
        self.newest = pit_id


def _walk_errors(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "type" in node and isinstance(node.get("type"), str):
            yield node
        for key in ("root_cause", "caused_by", "failed_shards", "reason"):
            child = node.get(key)
            if isinstance(child, list):
                for item in child:
                    yield from _walk_errors(item)
            elif isinstance(child, dict):
                yield from _walk_errors(child)


def _error_types(body: Any) -> list[str]:
    """Every error ``type`` in an ES error body: the outer one first, then causes."""
    if not isinstance(body, dict):
        return []
    err = body.get("error")
    if isinstance(err, str):
        return [err]
    out: list[str] = []
    for node in _walk_errors(err):
        if node["type"] not in out:
            out.append(node["type"])
    return out


def _reason(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        roots = err.get("root_cause") or []
        if roots and isinstance(roots[0], dict) and roots[0].get("reason"):
            return str(roots[0]["reason"])[:300]
        return str(err.get("reason", ""))[:300]
    return str(body)[:300]


_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


def _raise_if_not_network(exc: Exception) -> None:
    """Re-raise what the transport wrapped if it is no network failure.

    The transport turns *any* exception raised during a request into a ``ConnectionError``,
    including ones raised into the thread from outside: Celery's soft time limit
    (``SoftTimeLimitExceeded``), a ``KeyboardInterrupt``-like signal handler's exception. Retried
    as a connection error, the soft time limit would be swallowed and the unit would run on until
    the hard limit kills it. So only urllib3's own errors and OS-level errors are retried.
    """
    causes = getattr(exc, "errors", ()) or ()
    cause = causes[0] if causes else exc.__cause__  # the transport sets one or the other
    if cause is not None and not isinstance(cause, _NETWORK_ERRORS):
        raise cause


def _short(exc: Exception) -> str:
    text = str(exc)
    causes = getattr(exc, "errors", ()) or ()
    if causes:  # the transport's message is generic: name what urllib3 actually saw
        text += f" ({type(causes[0]).__name__}: {causes[0]})"
    return text if len(text) <= 300 else text[:300] + "..."


def client_from_settings(es: ElasticsearchSettings, url: str | None = None) -> Elasticsearch:
    """The official client on ``url`` (default ``ELASTICSEARCH_URL``) with the configured credentials."""

    def reveal(secret: Secret | None) -> str | None:
        return secret.value if secret is not None else None

    return build_client(
        url or es.url,
        api_key=reveal(es.api_key),
        username=reveal(es.username),
        password=reveal(es.password),
        request_timeout_s=es.request_timeout_s,
        verify_certs=es.verify_certs,
    )


def from_settings(settings: Settings) -> ElasticsearchSource:
    """The source configured by ``[elasticsearch]`` and ``[source]`` plus the secrets."""
    es = settings.elasticsearch
    if not es.url:
        raise PermanentSourceError("ELASTICSEARCH_URL is not set", kind="config")
    return ElasticsearchSource(
        client_from_settings(es),
        es.index,
        FieldNames.from_settings(settings.source),
        page_size=es.page_size,
        slices=es.slices,
        retry=RetryPolicy(max_attempts=es.retry_max_attempts, max_elapsed_s=es.retry_max_elapsed_s),
        request_timeout_s=es.request_timeout_s,
    )


__all__ = ["ElasticsearchSource", "RetryPolicy", "build_client", "client_from_settings", "from_settings"]
