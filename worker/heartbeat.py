"""The worker's heartbeat in Redis, and its liveness check.

A consumer bootstep beats on the worker's own event loop (``c.timer``), the loop that receives
tasks: a worker whose loop is stuck stops beating, as one that died does. It beats once when the
consumer starts, then every ``WORKER_HEARTBEAT_INTERVAL_S``; each beat holds for
``WORKER_HEARTBEAT_TTL_S``; a clean stop removes it at once.

``python -m worker.heartbeat [NAME]`` is the worker's docker-compose healthcheck: exit 0 when
the worker ``NAME`` (default ``celery@<this host name>``, Celery's own default node name) has a
live beat, 1 otherwise.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

import redis
from celery import bootsteps

from sessionizer.jobstore.liveness import WorkerRegistry, fail_fast_client
from sessionizer.settings import get_settings

log = logging.getLogger(__name__)


def registry() -> WorkerRegistry:
    """A registry on a client that fails fast: a beat must never hold the worker's loop for long."""
    s = get_settings()
    return WorkerRegistry(fail_fast_client(s.redis.url), ttl_s=s.workers.heartbeat_ttl_s)


class Heartbeat(bootsteps.StartStopStep):
    """Consumer bootstep: keep this worker's member of ``sz:workers`` fresh while it consumes."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self.tref: Any = None
        self.registry: WorkerRegistry | None = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        self.registry = registry()
        self.name = c.hostname
        self.beat()
        interval = get_settings().workers.heartbeat_interval_s
        self.tref = c.timer.call_repeatedly(interval, self.beat)

    def beat(self) -> None:
        try:
            self.registry.beat(self.name)  # type: ignore[union-attr]
        except redis.RedisError as exc:  # Redis away: readiness says so; the worker goes on
            log.warning("heartbeat not recorded: %s", type(exc).__name__)

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            c.timer.cancel(self.tref)
            self.tref = None
        if self.registry is not None:
            try:
                self.registry.leave(self.name)
            except redis.RedisError:
                pass  # the beat expires by itself
            self.registry = None

    shutdown = stop


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else f"celery@{socket.gethostname()}"
    try:
        alive = registry().is_alive(name)
    except redis.RedisError as exc:
        print(f"{name}: Redis unreachable ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(f"{name}: {'alive' if alive else 'no live heartbeat'}")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
