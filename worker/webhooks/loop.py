"""The loop that sends the due completion pushes, a thread in every worker.

Started and stopped by a consumer bootstep (as the heartbeat is), so it runs while the worker
consumes and stops with it. Each worker's loop claims the pushes it sends (``Deliveries.claim``):
with several workers, each push goes out from one of them at a time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

import redis
from celery import bootsteps

from sessionizer.jobstore import JobStore
from sessionizer.jobstore.deliveries import Deliveries
from sessionizer.jobstore.liveness import fail_fast_client
from sessionizer.settings import get_settings

from .sender import drain, http_client

log = logging.getLogger(__name__)


def run(stop: threading.Event) -> None:
    settings = get_settings()
    # the fail-fast client (no retries): while Redis is away a tick fails at once and the next one
    # tries again, so the loop never sits in retries when the worker is asked to stop
    store = JobStore(fail_fast_client(settings.redis.url), settings.jobs.ttl_s)
    deliveries = Deliveries(store.client, store.ttl_s, store.scripts)
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    with http_client(settings) as client:
        while not stop.wait(settings.webhooks.poll_interval_s):
            try:
                while drain(deliveries, settings, client, token) and not stop.is_set():
                    pass  # more may be due: go on without waiting
            except redis.RedisError as exc:  # Redis away: try again at the next tick
                log.warning("webhook pushes: the store is unreachable (%s)", type(exc).__name__)
            except Exception:
                log.exception("webhook pushes: unexpected error")


class WebhookSender(bootsteps.StartStopStep):
    """Consumer bootstep: run :func:`run` in a daemon thread while the worker consumes."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self.stop_event: threading.Event | None = None
        self.thread: threading.Thread | None = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=run, args=(self.stop_event,), name="webhook-sender", daemon=True)
        self.thread.start()

    def stop(self, c: Any) -> None:
        if self.stop_event is not None and self.thread is not None:
            self.stop_event.set()
            # briefly: a push still in flight keeps its claim, which lapses, and another sender
            # (or this one, restarted) sends it again; a stop never waits out an HTTP timeout
            self.thread.join(timeout=2.0)
        self.stop_event = self.thread = None

    shutdown = stop
