"""The Celery app factory, shared: the workers run tasks with it, the API only sends them by name
(:mod:`sessionizer.tasks`) and never imports the task modules (nor hdbscan, pandas or the
Elasticsearch client they need)."""

from __future__ import annotations

from celery import Celery

from .jobstore import FAIL_FAST_TIMEOUT_S
from .settings import Settings

WORKER_BROKER_CONNECT_S = 5.0
WORKER_BROKER_TIMEOUT_S = 10.0


def make_celery(settings: Settings, *, fail_fast: bool = False) -> Celery:
    """A Celery app on ``settings.redis.url``, configured for idempotent, crash-safe units.

    The API's (``fail_fast``) only sends tasks, and sends them within a request: its broker
    connection has the job store's socket timeouts and one retry, so that a Redis down or hung
    (stopped, overloaded: it accepts connections and never answers) fails the enqueue within
    about a second and a half (the submit answers 503) instead of holding the request forever.
    """
    transport: dict[str, float | int] = {
        # Redis redelivers an unacknowledged task after visibility_timeout: keep it above the
        # longest unit, or a slow unit would run twice at the same time.
        "visibility_timeout": settings.celery.visibility_timeout_s,
        # kombu sweeps for lost messages every interval x throttle seconds (100 s by
        # default); make the interval alone decide.
        "unacked_restore_interval": settings.celery.restore_interval_s,
        "unacked_restore_throttle": 1,
    }
    app = Celery("sessionizer")
    # A broker that vanishes without closing the connection (a host or container gone, a link
    # cut: nothing answers, nothing refuses) would hold a synchronous command for ever: the
    # workers' publishes, and the hand-back of their units as they stop, which then hung until
    # the grace period killed them. kombu's Redis transport recommends socket timeouts for
    # this; the workers' BRPOP waits 1 s at a time, far below them.
    transport |= {"socket_connect_timeout": WORKER_BROKER_CONNECT_S, "socket_timeout": WORKER_BROKER_TIMEOUT_S}
    if fail_fast:
        transport |= {"socket_connect_timeout": FAIL_FAST_TIMEOUT_S, "socket_timeout": FAIL_FAST_TIMEOUT_S}
        # Celery's default is 3 retries of up to 0.2 s each, every one waiting out the timeouts above
        app.conf.task_publish_retry_policy = {
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        }
    app.conf.update(
        broker_url=settings.redis.url,
        # Job state lives in the job store (sessionizer/jobstore/), not in Celery's result backend.
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # A unit is acknowledged only once done, and given back if its worker process dies, so
        # a killed worker loses nothing; units are idempotent, so a redelivery is harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        task_soft_time_limit=settings.celery.task_soft_time_limit_s,
        task_time_limit=settings.celery.task_time_limit_s,
        broker_connection_retry_on_startup=True,
        # Flower shows every unit, with its arguments, as it is sent, started and finished.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
    )
    return app
