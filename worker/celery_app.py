"""The workers' Celery application (``celery -A worker.celery_app worker``)."""

from __future__ import annotations

from sessionizer.celery_app import make_celery
from sessionizer.settings import get_settings

app = make_celery(get_settings())
app.conf.include = ["worker.tasks"]
