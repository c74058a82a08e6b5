"""Ride out a lost broker connection: keep the worker alive, and give back at once the units it held.

kombu's Redis transport keeps every message it hands to a worker in the ``unacked`` hash until
the worker acknowledges it. When the connection drops (a Redis restart, a failover), Celery
closes it and drops the units it had received but not yet started, counting on the channel's
close to put them back in the queue. That restore runs while Redis is away, so it cannot work,
and it does harm: Celery has already collected the connection, so the restore fails with
``AttributeError: 'NoneType' object has no attribute 'hostname'``, which Celery does not expect
there and which stops the consumer for good ("Unrecoverable error"): the worker stops taking
units and the job stays ``running`` with no progress. When the restore fails more quietly (a
connection error), the units only come back when the visibility timeout sweeps them: a minute
in the fault tests, two hours in production.

The same goes for the acknowledgement of a unit that was running when the connection dropped:
it goes through the closed channel, fails with an ``AttributeError`` and stops the consumer.

So the worker's consumer (:class:`Consumer`) skips that restore on a connection loss, and a
consumer bootstep (:class:`RestoreUnackedOnReconnect`) notes the units the closed channel still
held and restores them through the new channel once the consumer is connected again. Units
still running are left alone: they finish and record their result, and their acknowledgement
goes through the new channel. Restoring is idempotent: a unit already restored or
acknowledged by anyone is no longer in ``unacked`` and is skipped. A clean shutdown is not a
connection loss: kombu's own restore runs then, as before.

This leans on Celery's and kombu's internals (the consumer's connection-error hook, the ``Tasks``
step, the Redis QoS's ``_delivered`` and ``restore_by_tag``), so it is pinned to the Celery it was
written for: :data:`CELERY_VERSIONS`, the range ``pyproject.toml`` requires, which
``tests/test_reconnect.py`` checks against the installed Celery.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.exceptions import WorkerTerminate
from celery.worker import heartbeat, state
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.heart import Heart as CeleryHeartStep

from .lease import stopping

log = logging.getLogger(__name__)

# The Celery versions this module was written and tested for; a new major version may move the
# internals above: read them again before widening it (here and in pyproject.toml).
CELERY_VERSIONS = ">=5.4,<6"


# A heartbeat sent while the broker is away: one reconnect attempt, then the send fails (the
# timer logs it and the next beat tries again). kombu's default retries for ever, holding the
# event dispatcher's lock meanwhile: a worker stopping while its broker had vanished then hung
# on its "worker-offline" event until the grace period killed it (tests/test_netns.py).
HEARTBEAT_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 1, "interval_max": 1}


class _BoundedRetries:
    """An event dispatcher whose retried sends follow :data:`HEARTBEAT_RETRY`."""

    def __init__(self, dispatcher: Any) -> None:
        self._dispatcher = dispatcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dispatcher, name)

    def send(self, type: str, **fields: Any) -> Any:
        if fields.get("retry"):
            fields.setdefault("retry_policy", HEARTBEAT_RETRY)
        return self._dispatcher.send(type, **fields)


class Heart(CeleryHeartStep):
    """Celery's heartbeat step, its sends retried within :data:`HEARTBEAT_RETRY`."""

    def start(self, c: Any) -> None:
        c.heart = heartbeat.Heart(c.timer, _BoundedRetries(c.event_dispatcher), self.heartbeat_interval)
        c.heart.start()


class Consumer(CeleryConsumer):
    """Celery's consumer, minus the restore through a lost connection (see the module docstring),
    with bounded heartbeat retries (:class:`Heart`)."""

    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [
            "worker.reconnect:Heart" if step == "celery.worker.consumer.heart:Heart" else step
            for step in CeleryConsumer.Blueprint.default_steps
        ]

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        if (
            stopping.is_set()
            or state.should_stop
            or state.should_terminate
            or getattr(self.pool, "_pool", True) is None
        ):
            # The worker is stopping (SIGTERM handed its units back, its pool is gone) and the
            # broker went away meanwhile (the stack stops together): nothing to reconnect for.
            # Celery would read the stopped pool's size here and stop with an AttributeError
            # ("Unrecoverable error"), leaving the process hung until it is killed.
            raise WorkerTerminate(0) from exc
        channel = getattr(self.task_consumer, "channel", None)
        if channel is not None:
            channel.do_restore = False  # RestoreUnackedOnReconnect does it once reconnected
        super().on_connection_error_after_connected(exc)


class RestoreUnackedOnReconnect(bootsteps.StartStopStep):
    """Consumer bootstep: restore the units a lost connection held, as soon as it is back."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    # lost channels whose running units still have to be acknowledged, the latest few (a unit
    # outlives at most a few reconnects)
    ORPHANS = 8

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self.held: set[Any] = set()  # delivery tags of units the lost channel still held
        self.orphans: list[Any] = []  # the QoS of lost channels
        super().__init__(c, **kwargs)

    def stop(self, c: Any) -> None:
        # On a restart this runs after the old connection was closed (its own restore skipped by
        # Consumer), before the Tasks step replaces the channel: what it still holds is unrestored.
        channel = getattr(c.task_consumer, "channel", None)
        qos = getattr(channel, "qos", None)
        delivered = getattr(qos, "_delivered", None)
        if not delivered:
            return
        running = {getattr(r.message, "delivery_tag", None) for r in tuple(state.active_requests)}
        self.held |= set(delivered) - running
        self.orphans = [*self.orphans, qos][-self.ORPHANS :]

    def start(self, c: Any) -> None:
        # A unit running when the connection dropped is acknowledged, when it ends, through the
        # channel it came on; that channel's connection is gone (kombu would raise an
        # AttributeError there, which also stops the consumer): point it at the new channel,
        # on the same Redis, where the same ``unacked`` entries live.
        for orphan in self.orphans:
            orphan.channel = c.task_consumer.channel
        if not self.held:
            return
        qos = c.task_consumer.channel.qos
        if not hasattr(qos, "restore_by_tag"):  # kombu's Redis transport only
            return
        restored = 0
        for tag in sorted(self.held):
            try:
                qos.restore_by_tag(tag)
            except Exception as exc:  # noqa: BLE001
                # never stop the consumer over this: the next start, or the visibility timeout,
                # still brings them back
                log.warning("could not restore units held before a reconnect: %r", exc)
                break
            self.held.discard(tag)
            restored += 1
        if restored:
            log.info("restored %d unit(s) held when the broker connection was lost", restored)
