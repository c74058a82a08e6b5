"""The API's metrics at ``/metrics``, in the Prometheus text format (``METRICS_ENABLED``, on).

Two sources, each where it is exact:

* **HTTP requests** are counted and timed in the process that served them. Under gunicorn there
  are several such processes, so prometheus_client runs in multiprocess mode: each process writes
  its samples under ``PROMETHEUS_MULTIPROC_DIR`` (``config/gunicorn.conf.py`` sets a folder of
  its own when none is given, empties it at start and marks exited workers dead) and a scrape,
  whichever process answers it, sums every process's files. In a single process (tests, a plain
  WSGI server) they live in memory.
* **Jobs, the queue and the workers** are read from Redis at scrape time: jobs are submitted by API
  processes but finished by workers, so the job store counts them in Redis as they move
  (``sessionizer/jobstore/jobstats.py``); the queue's length and the live workers are Redis reads too.

``/metrics`` needs no API key (Prometheus scrapes it) and tells counts only, never a job, a key or
a user; keep it off the public side of a proxy if the counts themselves are private.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sessionizer.jobstore import jobstats
from sessionizer.settings import Settings

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"  # a path no route serves: one label value, whatever the path was

REQUESTS = Counter(
    "sessionizer_http_requests_total",
    "HTTP requests answered, by method, route and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "sessionizer_http_request_duration_seconds",
    "Time to produce an HTTP answer, by method and route (a streamed body may take longer to send)",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _record(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        method = request.method if request.method in METHODS else "OTHER"
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        REQUESTS.labels(method, route, str(response.status_code)).inc()
        LATENCY.labels(method, route).observe(time.perf_counter() - started)
    return response


class StoreCollector(Collector):
    """Jobs, queue depth and live workers, read from Redis when scraped."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self._read())
        except redis.RedisError:  # Redis away: say so, and still serve the HTTP figures
            families = []
        yield GaugeMetricFamily(
            "sessionizer_store_up", "1 when the job store (Redis) answered this scrape", value=1 if families else 0
        )
        yield from families

    def _read(self) -> Iterator[Metric]:
        svc = self.services
        counts = jobstats.read(svc.workers.client)  # the fail-fast client: a scrape must not wait out retries
        yield CounterMetricFamily("sessionizer_jobs_submitted", "Jobs accepted", value=counts.submitted)
        yield CounterMetricFamily(
            "sessionizer_shared_results_reused",
            "Jobs that reused the computation of an identical earlier request instead of scanning again",
            value=counts.shared,
        )
        finished = CounterMetricFamily(
            "sessionizer_jobs_finished",
            "Computations that succeeded or failed, "
            "and jobs their client cancelled (a job that reused a shared result is "
            "counted in sessionizer_shared_results_reused_total)",
            labels=["status"],
        )
        durations = HistogramMetricFamily(
            "sessionizer_job_duration_seconds", "Time from a job's submission to its final status", labels=["status"]
        )
        for status, n in counts.finished.items():
            finished.add_metric([status], n)
            buckets, total = counts.durations[status]
            durations.add_metric([status], [(_le(b), c) for b, c in buckets], total)
        yield finished
        yield durations
        queue = svc.celery.conf.task_default_queue
        depth = GaugeMetricFamily(
            "sessionizer_queue_depth",
            "Tasks waiting in the broker's queue, and tasks handed to a worker and not yet acknowledged",
            labels=["state"],
        )
        client = svc.workers.client
        depth.add_metric(["waiting"], client.llen(queue))
        depth.add_metric(["unacked"], client.hlen("unacked"))  # kombu's Redis transport keeps them there
        yield depth
        yield GaugeMetricFamily(
            "sessionizer_workers_alive", "Celery workers with a live heartbeat", value=svc.workers.alive()
        )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def registry_for_scrape(services: Any) -> CollectorRegistry:
    """What a scrape reads: every process's HTTP samples (or this process's), and the store's."""
    registry = CollectorRegistry(auto_describe=False)
    multiproc_dir = services.settings.metrics.multiproc_dir  # PROMETHEUS_MULTIPROC_DIR, as prometheus_client reads it
    if multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]  # untyped upstream
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(StoreCollector(services))
    return registry


class _Forward(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


def metrics_view() -> Response:
    from .extensions import services

    body = generate_latest(registry_for_scrape(services()))
    return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0], headers={"Content-Type": CONTENT_TYPE_LATEST})


def init_metrics(app: Flask, settings: Settings) -> None:
    """Count and time every request, and serve ``/metrics``; nothing at all when metrics are off."""
    if not settings.metrics.enabled:
        return
    app.before_request(_start)
    app.after_request(_record)
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
