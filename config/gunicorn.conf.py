"""gunicorn settings for the API: ``gunicorn -c config/gunicorn.conf.py webapp.wsgi:app``.

Serving model: gevent. The API is a long-poll API (``Prefer: wait=N`` holds a request up to
``MAX_WAIT_S``) whose requests spend their time waiting on Redis and on clients, not computing.
With a thread per request (gunicorn's gthread worker) a handful of waiting or slow clients hold
every thread and the API stops answering. With gevent each connection is a greenlet: a client
that trickles its body or waits for its job costs a few kilobytes, not a thread, and a worker
process serves up to ``worker_connections`` of them. The socket, ``time.sleep``, the locks of
redis-py's pool and kombu's producer all yield once patched, and hiredis only parses bytes.

Monkey-patching happens in each worker process (gunicorn's ``GeventWorker.patch``) before the
application is imported, so ``preload_app`` must stay off: preloading would import redis-py,
Celery and threading in the master, before the patch. ``serving`` (the worker class and logger
named below) imports nothing of the application for the same reason.

Processes: ``--workers`` / ``WEB_CONCURRENCY`` (gunicorn's own), one per core. In front of it, a
buffering proxy (nginx, a cloud load balancer) can also absorb slow clients before they reach
gunicorn; see docs/operating.md ("Serving").
"""

wsgi_app = "webapp.wsgi:app"
worker_class = "serving.worker.ProblemGeventWorker"
worker_connections = 1000  # simultaneous connections per worker process
preload_app = False  # see above: the app is imported after the gevent patch
timeout = 30  # a worker whose event loop is blocked this long is restarted
graceful_timeout = 10  # on SIGTERM, requests still running (waits) get this long
keepalive = 5

# What gunicorn itself refuses (answered as problem+json by the worker class): 414, 431, 400.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

logger_class = "serving.accesslog.RedactingLogger"
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms'

# gunicorn's control socket (a fixed path in the home folder) is not used here, and two servers
# on one machine (tests, make up beside make demo) would contend for it.
control_socket_disable = True

# The API's metrics (webapp/metrics.py): every worker process writes its samples into one folder
# (prometheus_client's multiprocess mode), which a scrape sums. The server's own folder unless
# PROMETHEUS_MULTIPROC_DIR names one; emptied when the server starts, so it counts from zero; a
# worker that exits is marked dead. The settings are standard library only: safe before the patch.
from sessionizer.settings import get_settings as _get_settings  # noqa: E402

_settings = _get_settings()
_own_metrics_dir = _settings.metrics.enabled and not _settings.metrics.multiproc_dir
if _settings.metrics.enabled:
    import tempfile as _tempfile

    _metrics_dir = _settings.metrics.multiproc_dir or _tempfile.mkdtemp(prefix="sessionizer-api-metrics-")
    raw_env = [f"PROMETHEUS_MULTIPROC_DIR={_metrics_dir}"]  # set in the master, inherited by workers


def on_starting(server):
    if _settings.metrics.enabled:
        from pathlib import Path

        Path(_metrics_dir).mkdir(parents=True, exist_ok=True)
        for stale in Path(_metrics_dir).glob("*.db"):
            stale.unlink()


def child_exit(server, worker):
    if _settings.metrics.enabled:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server):
    if _own_metrics_dir:
        import shutil

        shutil.rmtree(_metrics_dir, ignore_errors=True)
