"""What the worker tells operators: its logs (text or JSON, with the job id and unit of the task
running) and its metrics endpoint (``WORKER_METRICS_PORT``). Connected to Celery's signals by
``worker/celery_app.py``; nothing here runs in the API.

Metrics of the prefork pool's processes are summed through prometheus_client's multiprocess mode,
which reads ``PROMETHEUS_MULTIPROC_DIR`` itself when it is first imported. So, with metrics on,
:func:`prepare_metrics_dir` runs when the Celery app module is imported, before the task modules
(and prometheus_client) are: it gives this worker a folder of its own when none is configured.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from celery.signals import celeryd_init, setup_logging, task_postrun, task_prerun, worker_ready, worker_shutdown

from sessionizer import logs
from sessionizer.settings import Settings, export, get_settings
from sessionizer.tasks import UNIT

log = logging.getLogger(__name__)


_metrics_dir: str = ""
_own_dir = False  # made here, so removed at shutdown


def prepare_metrics_dir(settings: Settings) -> None:
    """With metrics on and no folder configured, one of this process's own (its pool inherits it).

    It goes into the environment: prometheus_client takes the folder only from there, and the
    pool processes inherit it."""
    global _metrics_dir, _own_dir
    if settings.workers.metrics_port:
        _metrics_dir = settings.metrics.multiproc_dir
        if not _metrics_dir:
            _metrics_dir, _own_dir = tempfile.mkdtemp(prefix="sessionizer-worker-metrics-"), True
            export("PROMETHEUS_MULTIPROC_DIR", _metrics_dir)
        Path(_metrics_dir).mkdir(parents=True, exist_ok=True)
        # Celery's command line may have imported prometheus_client already (Flower's command
        # plugin does), so it chose its in-memory values before the folder was set: choose again.
        # Metrics are created after this (the task modules), and take the class chosen now.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()


def configure_logging() -> None:
    """The project's log format from the start (text or JSON, one line a record, secrets masked),
    so that even what Celery says before it sets up logging (a warning) is a line of it."""
    logs.configure_from(get_settings())


@setup_logging.connect
def _configure_logging(loglevel: Any = None, **_: Any) -> None:
    """Celery leaves the logging to us; its ``--loglevel`` wins."""
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    logs.configure_from(get_settings(), level=level or None)


@celeryd_init.connect
def _empty_metrics_dir(**_: Any) -> None:
    """A starting worker counts from zero: files of an earlier run in its folder are removed."""
    if _metrics_dir:
        for entry in Path(_metrics_dir).glob("*.db"):
            entry.unlink(missing_ok=True)


@worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    settings = get_settings()
    if settings.workers.metrics_port:
        from .metrics import serve

        serve(settings.workers.metrics_port, settings.workers.metrics_addr, _metrics_dir)


@worker_shutdown.connect
def _remove_metrics_dir(**_: Any) -> None:
    if _own_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


@task_prerun.connect
def _bind_task(task: Any = None, args: Any = None, **_: Any) -> None:
    """Log lines of a task carry its job id (and unit index, for a unit)."""
    if args:
        logs.set_context(job_id=str(args[0]), unit=int(args[1]) if task is not None and task.name == UNIT else None)


@task_postrun.connect
def _unbind_task(**_: Any) -> None:
    logs.clear_context()
