"""The workers' Celery application (``celery -A worker.celery_app worker``)."""

from __future__ import annotations

from celery.signals import worker_ready

from sessionizer.celery_app import make_celery
from sessionizer.settings import get_settings

from . import observe  # logs and metrics, on Celery's signals
from .lease import quick_stop_on_sigterm

observe.configure_logging()
# Before the task modules import prometheus_client: it reads its multiprocess folder at import.
observe.prepare_metrics_dir(get_settings())

app = make_celery(get_settings())
app.conf.include = ["worker.tasks"]
# Only the worker beats (the API's Celery app only sends tasks); readiness counts the beats.
app.steps["consumer"].add("worker.heartbeat:Heartbeat")
app.steps["consumer"].add("worker.webhooks.loop:WebhookSender")  # completion pushes (worker/webhooks/)
# A lost broker connection (a Redis restart) neither stops the consumer nor leaves the units it
# held waiting for the visibility timeout: they go back to the queue once it reconnects
# (worker/reconnect.py).
app.conf.worker_consumer = "worker.reconnect:Consumer"
app.steps["consumer"].add("worker.reconnect:RestoreUnackedOnReconnect")
# Units' leases are renewed by the pool processes; one worker at a time reconciles (hands out
# again the units no live lease holds: worker/reconcile.py); SIGTERM hands running units back.
app.steps["worker"].add("worker.reconcile:ReconcilerStep")
worker_ready.connect(quick_stop_on_sigterm, weak=False)
