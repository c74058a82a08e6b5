"""The API under its real server: gunicorn with the project's config, as a subprocess on a free port.

For the tests where the server is the point (slow clients, waits, the server's own errors, the
access log, shutdown, fuzzing over TCP). Each server gets its own Redis, so the tasks it queues
never reach a worker of another test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from devstack import ROOT, RedisServer, api_command, free_port, start_redis, wait_http
from webapp.auth import digest

KEYS = {"alpha": "live-key-alpha-6c1d0e2f9a8b", "beta": "live-key-beta-0f9e8d7c6b5a"}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


class LiveServer:
    """gunicorn (``config/gunicorn.conf.py``) + its own embedded Redis; keys ``alpha`` and ``beta``."""

    def __init__(self, tmp: Path, workers: int = 2, **env: str) -> None:
        self.tmp, self.workers, self.extra_env = tmp, workers, env
        self.redis: RedisServer | None = None
        self.port = 0
        self.log = tmp / "gunicorn.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.redis = start_redis(self.tmp / "redis")
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ELASTICSEARCH_", "EVENT"))}
        env.update(
            {
                "REDIS_URL": self.redis.url,
                "AUTH_REQUIRED": "true",
                "PYTHONUNBUFFERED": "1",  # env may override
                "API_KEYS": ",".join(f"{n}:{digest(k)}" for n, k in KEYS.items()),
                **self.extra_env,
            }
        )
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                api_command("127.0.0.1", self.port, self.workers),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_http(f"{self.base}/healthz", timeout=60)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"gunicorn did not start:\n{self.log.read_text()[-3000:]}") from None
        return self

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM to gunicorn's master, its group killed if it has not exited in ``timeout``;
        returns the master's exit code (``None`` when it had to be killed)."""
        code = None
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
        if self.redis:
            self.redis.stop()
        return code

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def raw(self, data: bytes) -> bytes:
        """Send raw bytes on a fresh connection; the server's first answer."""
        with self.connect() as sock:
            sock.sendall(data)
            return read_answer(sock)

    def port_listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer with a ``Content-Length`` body (enough for problem+json and JSON answers)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return buf
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        None,
    )
    while length is not None and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def wait_until(predicate, timeout: float = 60.0, every: float = 0.1) -> None:
    """Poll ``predicate`` until it holds; fail (not a timing assertion: a bound on a hang) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {predicate}")
        time.sleep(every)
