"""One temporary stack for the tests and the benchmarks: a Redis of its own, the API under its real
server (gunicorn, ``config/gunicorn.conf.py``), N real Celery workers and, if asked, Flower, all
loopback-only, on free ports, stopped together at the end of the block (Redis last).

    with local_stack(EVENT_SOURCE="file", EVENTS_PATH=str(events)) as stack:
        httpx.post(f"{stack.api}/jobs", ...)

Keyword arguments in capitals are the stack's environment (the project's settings); the processes
never see the caller's own settings (``REDIS_*``, ``ELASTICSEARCH_*``, ``EVENT*``, ``API_KEYS``,
``AUTH_*``, ``SESSIONIZER_*``), so a developer's shell cannot leak into a test.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .net import free_port, wait_http
from .processes import Stack, api_command, flower_command, worker_command
from .redisserver import RedisServer, start_redis

HOST = "127.0.0.1"
# the caller's own settings, never passed on to the stack's processes
FOREIGN = ("REDIS_", "ELASTICSEARCH_", "EVENT", "API_KEYS", "AUTH_", "SESSIONIZER_", "FLOWER_")


def stack_environment(**env: str) -> dict[str, str]:
    """This process's environment without the project's settings, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    return {**base, "PYTHONUNBUFFERED": "1", **env}


@dataclass
class LocalStack:
    """A running stack: its folder (logs ``<name>.log``), Redis, environment and processes."""

    tmp: Path
    redis: RedisServer
    env: dict[str, str]
    stack: Stack
    apis: list[str] = field(default_factory=list)  # base URLs, in the order started
    api_procs: list[subprocess.Popen] = field(default_factory=list)
    workers: list[subprocess.Popen] = field(default_factory=list)
    flower: str | None = None  # its base URL, when started
    flower_auth: str | None = field(default=None, repr=False)  # ``user:password``

    @property
    def api(self) -> str:
        """The first API's base URL."""
        return self.apis[0]

    @property
    def redis_url(self) -> str:
        return self.env["REDIS_URL"]

    def db_url(self, db: int) -> str:
        """The stack's Redis, database ``db``."""
        return f"{self.redis.url.rsplit('/', 1)[0]}/{db}"

    def _env(self, db: int | None, env: dict[str, str]) -> dict[str, str]:
        return {**({"REDIS_URL": self.db_url(db)} if db is not None else {}), **env}

    def add_worker(
        self, concurrency: int = 2, name: str | None = None, db: int | None = None, timeout: float = 90.0, **env: str
    ) -> subprocess.Popen:
        """One more Celery worker (``db``: on that Redis database), once it says it is ready."""
        name = name or f"worker{len(self.workers)}"
        log = self.tmp / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = self.stack.spawn(worker_command(concurrency, name=name), log=log, extra_env=self._env(db, env))
        self.workers.append(proc)
        deadline = time.monotonic() + timeout
        while b" ready." not in log.read_bytes()[offset:]:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        return proc

    def add_api(
        self,
        workers: int = 2,
        args: Sequence[str] = (),
        name: str | None = None,
        db: int | None = None,
        timeout: float = 90.0,
        **env: str,
    ) -> str:
        """One more API under gunicorn on a free port (``args``: more gunicorn options); its base URL."""
        name = name or f"api{len(self.apis)}"
        port = free_port()
        log = self.tmp / f"{name}.log"
        proc = self.stack.spawn([*api_command(HOST, port, workers), *args], log=log, extra_env=self._env(db, env))
        base = f"http://{HOST}:{port}"
        try:
            wait_http(f"{base}/healthz", timeout=timeout)
        except RuntimeError:
            raise RuntimeError(f"the API {name} did not start:\n{log.read_text()[-3000:]}") from None
        self.api_procs.append(proc)
        self.apis.append(base)
        return base

    def add_flower(self, timeout: float = 90.0) -> str:
        """Flower on a free port, with a fresh login (:attr:`flower_auth`); its base URL."""
        port = free_port()
        self.flower_auth = f"admin:{secrets.token_urlsafe(18)}"
        self.stack.spawn(
            flower_command(HOST, port), log=self.tmp / "flower.log", extra_env={"FLOWER_BASIC_AUTH": self.flower_auth}
        )
        self.flower = f"http://{HOST}:{port}"
        wait_http(f"{self.flower}/healthcheck", timeout=timeout)
        return self.flower


@contextmanager
def local_stack(
    tmp: Path | None = None,
    *,
    workers: int = 1,
    concurrency: int = 2,
    apis: int = 1,
    api_workers: int = 2,
    api_args: Sequence[str] = (),
    flower: bool = False,
    grace_s: float = 7.0,
    **env: str,
) -> Iterator[LocalStack]:
    """Redis, ``apis`` APIs (gunicorn, ``api_workers`` processes each, ``api_args`` appended),
    ``workers`` Celery workers (``concurrency`` each) and Flower if asked, with ``env`` as their
    settings; in ``tmp`` (logs, Redis data; a temporary folder, removed afterwards, when None).
    ``workers=0, apis=0`` is a Redis alone, with the environment for processes started by hand."""
    with tempfile.TemporaryDirectory(prefix="sessionizer-stack-") if tmp is None else _kept(tmp) as folder:
        folder_path = Path(folder)
        folder_path.mkdir(parents=True, exist_ok=True)
        procs = Stack(env={}, grace_s=grace_s)
        try:
            procs.redis = start_redis(folder_path / "redis")
            procs.env = stack_environment(REDIS_URL=procs.redis.url, **env)
            stack = LocalStack(folder_path, procs.redis, procs.env, procs)
            for i in range(workers):
                stack.add_worker(concurrency, name="worker" if workers == 1 else f"worker{i}")
            for i in range(apis):
                stack.add_api(api_workers, api_args, name="api" if apis == 1 else f"api{i}")
            if flower:
                stack.add_flower()
            yield stack
        finally:
            procs.stop()


@contextmanager
def _kept(path: Path) -> Iterator[Path]:
    yield path
