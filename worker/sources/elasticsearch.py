"""Reading usage events from Elasticsearch: point in time + ``search_after``, fast and exact.

One :meth:`ElasticsearchSource.read_events` call opens a point in time (PIT) on the index, pages
through every document of the wanted users in the time range (sort ``["_doc", "_shard_doc"]``,
``track_total_hits: false``, ``_source`` limited to the four fields, ``filter_path`` trimming the
response), parses each page straight into an :class:`EventAccumulator` and closes the PIT in a
``finally``. The protocol facts it follows are in ``docs/elasticsearch.md``.

Speed: the client (``es_client.py``) is built with orjson (de)serialisers, so a page of 10,000
hits is one ``orjson.loads`` and one ``add_many`` over the ``_source`` dicts; no per-event Python
object outlives its page.

Faults: every request goes through a :class:`~worker.sources.es_retry.Retrier`, which retries
transient failures (429, 502, 503, 504, connection errors, timeouts) with exponential backoff and
full jitter, bounded in attempts and in total time, then raises :class:`TransientSourceError`.
Permanent failures (missing index, credentials, bad query: ``es_errors.py``) raise
:class:`PermanentSourceError` at once. An expired PIT restarts the whole read with a fresh PIT and
a fresh accumulator, so the result stays exact. PIT searches are idempotent, so retrying a page
never skips or repeats one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Unpack

from elasticsearch import ApiError, Elasticsearch

from sessionizer.settings import Settings

from .accumulator import EventAccumulator
from .base import OnProgress, PermanentSourceError, ReadOptions, ShouldStop, Stopped, TransientSourceError
from .documents import DEFAULT_NAMES, FieldNames
from .es_client import client_from_settings
from .es_errors import PitExpired, short
from .es_retry import CLOSE_PIT, DAY_COUNTS, DEFAULT_RETRY, OPEN_PIT, SEARCH, Aborted, Retrier, RetryPolicy
from .gcpause import gc_paused

log = logging.getLogger(__name__)

SORT = ["_doc", "_shard_doc"]
# `_shards.failed` rides along so that a partial result (a shard failed) is never taken as complete.
FILTER_PATH = "pit_id,hits.hits._source,hits.hits.sort,_shards.failed"
# day_counts: buckets per page (10,000: well under search.max_buckets, 65,536) and the answer's trim
DAY_COUNTS_PAGE = 10_000
DAY_COUNTS_FILTER_PATH = (
    "aggregations.per_user_day.after_key,aggregations.per_user_day.buckets.key,"
    "aggregations.per_user_day.buckets.doc_count,_shards.failed"
)


class ElasticsearchSource:
    """An :class:`~worker.sources.base.EventSource` over one Elasticsearch index.

    Parameters
    ----------
    client : Elasticsearch
        The official client (see :func:`~worker.sources.es_client.build_client`; any client works, but without orjson
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
    sleep, clock, rng
        Injectable for tests.
    """

    def __init__(
        self,
        client: Elasticsearch,
        index: str,
        names: FieldNames = DEFAULT_NAMES,
        page_size: int = 10_000,
        *,
        slices: int = 1,
        keep_alive: str = "2m",
        retry: RetryPolicy = DEFAULT_RETRY,
        max_restarts: int = 3,
        request_timeout_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
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
        self.max_restarts = max_restarts
        self.retrier = Retrier(index, retry, request_timeout_s=request_timeout_s, sleep=sleep, clock=clock, rng=rng)

    def __repr__(self) -> str:
        return f"ElasticsearchSource(index={self.index!r}, page_size={self.page_size}, slices={self.slices})"

    # ------------------------------------------------------------------ public
    def read_events(self, users: list[str], lo_ms: int, hi_ms: int, **options: Unpack[ReadOptions]) -> EventAccumulator:
        """Every event of ``users`` with ``lo_ms <= t <= hi_ms`` (both inclusive), read once
        (all of it from the cluster: ``since_ms`` changes nothing here)."""
        should_stop, on_progress = options.get("should_stop"), options.get("on_progress")
        wanted = sorted(set(users))
        restarts = 0
        while True:
            acc = EventAccumulator(self.names, users=wanted, lo_ms=lo_ms, hi_ms=hi_ms)
            if not wanted or lo_ms > hi_ms:
                return acc
            try:
                self._read_once(acc, self.query(wanted, lo_ms, hi_ms), should_stop, on_progress)
                return acc
            except PitExpired:
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
        :attr:`retrier` (same retries and errors as the reads). Days without documents are absent.
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
            agg = self.retrier.call(DAY_COUNTS, page).get("aggregations", {})
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
        pit_id = self.retrier.call(
            OPEN_PIT,
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
            except Aborted:
                pass
            except BaseException as exc:  # noqa: BLE001 - whatever ends a slice (a soft time limit too) goes to the caller
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
            for kind in (Stopped, PitExpired, PermanentSourceError):
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
                raise Aborted()
            if should_stop():
                raise Stopped()
            params["pit"] = {"id": pits.get(chain), "keep_alive": self.keep_alive}
            with gc_paused():
                resp = self.retrier.call(SEARCH, page, abort=abort)
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
            self.retrier.call(CLOSE_PIT, close)
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.warning("could not close the point in time on index [%s]: %s", self.index, short(exc))


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
