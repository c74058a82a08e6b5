"""The local stack's processes: the commands that start a Celery worker, the API under gunicorn and
Flower, and :class:`Stack` / :class:`Supervisor`, which start them together, stop them together
and start again one that dies (``make up``). The embedded Redis is :mod:`devstack.redisserver`;
it is started only when ``REDIS_URL`` is not given.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sessionizer.settings import child_environment

from .redisserver import RedisServer, start_redis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def worker_command(concurrency: int = 2, name: str = "worker", loglevel: str = "INFO") -> list[str]:
    return [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--loglevel",
        loglevel,
        "--concurrency",
        str(concurrency),
        "--hostname",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--events",
    ]


def flower_command(host: str, port: int, basic_auth: str | None = None) -> list[str]:
    """Flower, the Celery monitor, on the same broker (it follows the workers' task events), with
    its ``Host`` check and required login (``worker/flower.py``). ``basic_auth`` here is on the
    command line; the local stack passes it in ``FLOWER_BASIC_AUTH`` instead (no secret in ``ps``)."""
    cmd = [PYTHON, "-m", "worker.flower", f"--address={host}", f"--port={port}"]
    if basic_auth:
        cmd.append(f"--basic-auth={basic_auth}")
    return cmd


GUNICORN_CONF = ROOT / "config" / "gunicorn.conf.py"


def api_command(host: str, port: int, workers: int = 2, fd: int | None = None) -> list[str]:
    """The API under gunicorn with the project's settings (gevent workers), as in docker-compose;
    ``fd``: a listening socket it inherits instead (``make up`` holds its port across restarts)."""
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "--config",
        str(GUNICORN_CONF),
        "--bind",
        f"fd://{fd}" if fd is not None else f"{host}:{port}",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]


@dataclass
class Stack:
    """Processes started together and stopped together.

    Each child runs in a session (process group) of its own: a Ctrl-C at the terminal reaches
    only the supervisor, which then signals each child exactly once. A child signalled twice
    (once by the terminal, once by its supervisor) is how gunicorn's shutdown handler came to be
    entered twice and hang with the port held. Whatever a child leaves behind in its group
    (gunicorn's workers, Celery's pool) is killed with the group once the child has gone or its
    grace period is over.
    """

    env: dict[str, str] = field(default_factory=child_environment)
    procs: list[subprocess.Popen] = field(default_factory=list)
    redis: RedisServer | None = None
    # workers hand their units back and exit within 5 s (worker/lease.py), gunicorn gives its
    # requests a few seconds: the whole stack stops within 10 s, Redis last
    grace_s: float = 7.0
    sockets: list[socket.socket] = field(default_factory=list)

    def start_redis(self, data_dir: Path, password: str | None = None, bind: str = "127.0.0.1") -> str:
        if self.env.get("REDIS_URL"):
            return self.env["REDIS_URL"]
        self.redis = start_redis(data_dir, password=password, bind=bind)
        self.env["REDIS_URL"] = self.redis.url
        return self.redis.url

    def spawn(
        self,
        args: list[str],
        log: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> subprocess.Popen:
        out = open(log, "ab") if log else None
        try:
            # (signals are not held back here: a child inherits the signal mask of its parent)
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env={**self.env, **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=pass_fds,
            )
            self.procs.append(proc)
        finally:
            if out:
                out.close()  # the child holds its own descriptor
        return proc

    def stop(self) -> None:
        """SIGTERM to each child once, then SIGKILL to its whole group: at once for what its
        leader left behind, after ``grace_s`` for a leader still running. A Ctrl-C or SIGTERM
        arriving meanwhile waits until everything is stopped."""
        with signals_deferred():
            procs, self.procs = self.procs, []
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            for proc in procs:
                _wait_unreaped(proc.pid, deadline)
                _kill_group(proc.pid)  # the leader is not reaped yet, so its group id is still its own
                proc.wait()
            if self.redis:
                self.redis.stop()
                self.redis = None
            for sock in self.sockets:
                sock.close()
            self.sockets = []

    def reap(self, proc: subprocess.Popen) -> None:
        """A child that exited by itself: kill what it left in its group, and forget it."""
        _kill_group(proc.pid)
        proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)


@dataclass
class Supervised:
    """One process of a stack that :class:`Supervisor` starts again when it dies."""

    name: str
    start: Callable[[], subprocess.Popen]  # starts it (again), and returns its process
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    delay_s: float = 0.0  # the backoff before the next start, once it has died
    due: float = 0.0  # when to start it again (monotonic), while it is down


@dataclass
class Supervisor:
    """Starts a stack's processes and starts again any that dies, with backoff from 1 s to 30 s
    (doubling at each death; back to 1 s once a process has stayed up a minute); says so."""

    stack: Stack
    say: Callable[[str], None] = print
    services: list[Supervised] = field(default_factory=list)
    BACKOFF_S: tuple[float, float] = (1.0, 30.0)
    STABLE_S: float = 60.0

    def add(
        self, name: str, start: Callable[[], subprocess.Popen], running: subprocess.Popen | None = None
    ) -> Supervised:
        """Start a process (or watch ``running``, started already) and keep it running."""
        svc = Supervised(name, start, delay_s=self.BACKOFF_S[0])
        svc.proc, svc.started_at = running or start(), time.monotonic()
        self.services.append(svc)
        return svc

    def check(self) -> None:
        """One look at every process: note the dead, start again those whose backoff is over."""
        now = time.monotonic()
        for svc in self.services:
            if svc.proc is not None and svc.proc.poll() is not None:
                code = svc.proc.returncode
                if svc.proc in self.stack.procs:
                    self.stack.reap(svc.proc)
                svc.proc = None
                if now - svc.started_at >= self.STABLE_S:
                    svc.delay_s = self.BACKOFF_S[0]
                svc.due = now + svc.delay_s
                self.say(f"{svc.name} exited (code {code}); starting it again in {svc.delay_s:.0f} s")
                svc.delay_s = min(2 * svc.delay_s, self.BACKOFF_S[1])
            elif svc.proc is None and now >= svc.due:
                try:
                    svc.proc, svc.started_at = svc.start(), now
                except (OSError, RuntimeError) as exc:  # could not start: try again after the backoff
                    svc.due = now + svc.delay_s
                    self.say(f"{svc.name} did not start ({exc}); trying again in {svc.delay_s:.0f} s")
                    svc.delay_s = min(2 * svc.delay_s, self.BACKOFF_S[1])
                    continue
                self.say(f"{svc.name} started again (pid {svc.proc.pid})")


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back for the block (delivered after it), so that stopping the
    children is never cut half-way. Never around a spawn: children inherit the mask."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _wait_unreaped(pid: int, deadline: float) -> None:
    """Wait until ``pid`` has exited or ``deadline`` passes, leaving it to be reaped later."""
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(0.05)


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a child's own process group (its leader included)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty: everything in it has exited
