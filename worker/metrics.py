"""The workers' metrics (Prometheus), served by each worker's main process on ``WORKER_METRICS_PORT``.

Units run in the prefork pool's processes, not in the main process that serves the metrics, so
prometheus_client runs in multiprocess mode: each process writes its counters to files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client reads that variable itself, at import), and a
scrape sums them. The folder is emptied when the worker starts, so a restarted worker does not
add the previous run's files to its own; a pool process replaced after a crash keeps its files,
so its counts are not lost. Only counters and histograms are used: both sum across processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

log = logging.getLogger(__name__)

UNITS = Counter(
    "sessionizer_units_total",
    "Units run, by outcome: done, failed, stopped (job cancelled), "
    "skipped (job no longer running), error (retried by Celery)",
    ["outcome"],
)
UNIT_SECONDS = Histogram(
    "sessionizer_unit_duration_seconds",
    "Time a unit took, by outcome",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)
EVENTS_SCANNED = Counter(
    "sessionizer_events_scanned_total",
    "Documents of the requested users that units used (from the event source or the event store)",
)
EVENTS_FROM_SOURCE = Counter(
    "sessionizer_events_from_source_total",
    "Documents units read from the event source itself (Elasticsearch or the files), not from the event store",
)
INVALID_EVENTS = Counter(
    "sessionizer_invalid_events_total", "Documents of the requested users that broke the event rules (skipped)"
)
SOURCE_FAILURES = Counter(
    "sessionizer_source_failures_total",
    "Units failed by their event source, by "
    "source and kind (unavailable after retries, unauthorized, index_not_found, ...)",
    ["source", "kind"],
)
ES_REQUESTS = Counter(
    "sessionizer_elasticsearch_requests_total",
    "Requests sent to Elasticsearch, by operation and HTTP status (`error` when no answer came)",
    ["operation", "status"],
)
ES_SECONDS = Histogram(
    "sessionizer_elasticsearch_request_duration_seconds",
    "Elasticsearch request latency, by operation",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ES_RETRIES = Counter(
    "sessionizer_elasticsearch_retries_total",
    "Transient Elasticsearch failures retried after a backoff, by operation",
    ["operation"],
)
PITS_OPENED = Counter("sessionizer_elasticsearch_pits_opened_total", "Points in time opened")
PITS_CLOSED = Counter("sessionizer_elasticsearch_pits_closed_total", "Points in time closed")


# The `operation` label of the Elasticsearch metrics: stable codes, named by the code that sends
# the request (a retry) or read from its path (every request, below the client).
EsOperation = Literal["open_pit", "close_pit", "search", "bulk", "other"]


def es_operation(method: str, target: str) -> EsOperation:
    """A request's operation, from its path: a bounded label, never an index name or an id."""
    path = target.split("?", 1)[0]
    if path.endswith("/_pit"):
        return "open_pit" if method == "POST" else "close_pit"
    if path.endswith("/_search") or "/_search/" in path:
        return "search"
    if path.endswith("/_bulk"):
        return "bulk"
    return "other"


def record_es_request(method: str, target: str, status: int | None, seconds: float) -> None:
    op = es_operation(method, target)
    ES_REQUESTS.labels(op, str(status) if status is not None else "error").inc()
    ES_SECONDS.labels(op).observe(seconds)
    if status == 200 and op == "open_pit":
        PITS_OPENED.inc()
    elif status == 200 and op == "close_pit":
        PITS_CLOSED.inc()


def record_es_retry(operation: EsOperation) -> None:
    """Count a retried request under its operation's code (``worker/sources/es_retry.py``)."""
    ES_RETRIES.labels(operation).inc()


@contextmanager
def unit_run() -> Iterator[Callable[[str], None]]:
    """Time a unit and count it under the outcome it reports (``error`` if it raised)."""
    started = time.perf_counter()
    outcome = ["error"]
    try:
        yield lambda value: outcome.__setitem__(0, value)
    finally:
        UNITS.labels(outcome[0]).inc()
        UNIT_SECONDS.labels(outcome[0]).observe(time.perf_counter() - started)


def serve(port: int, addr: str, multiproc_dir: str) -> None:
    """Serve every process's metrics, summed, from this (the main) process."""
    registry = CollectorRegistry()
    if multiproc_dir:
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
        log.warning("PROMETHEUS_MULTIPROC_DIR is not set: the pool processes' metrics will be missing")
    start_http_server(port, addr=addr, registry=registry)
    log.info("metrics on http://%s:%d/metrics", addr, port)
