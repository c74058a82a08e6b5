"""``make demo`` and ``make up``: the whole service on embedded defaults, driven over HTTP.

``python -m devstack demo``: start an embedded Redis, a Celery worker and the API, write a
realistic event file if there is none, submit a job over HTTP, show its progress, print the
sessions as a table, stop everything and exit 0.
``python -m devstack up``: the same stack in the foreground until Ctrl-C / SIGINT / SIGTERM,
which stop every process it started (within 10 s, even mid-job); a process of it that dies is
started again, with backoff. ``python -m devstack worker`` (``make worker``): one more worker
for a running stack, on this host or another (``REDIS_URL`` as ``make up`` printed it).

Data (Redis' append-only file, logs, the demo events) goes to ``var/``, or to the folder given by
``--var-dir`` / ``SESSIONIZER_VAR_DIR`` (the tests use a temporary one, never the user's).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sessionizer.settings import child_environment, get_settings

from .net import free_port, listening_socket, port_free, wait_http
from .processes import Stack, Supervisor, api_command, flower_command, worker_command

if TYPE_CHECKING:
    from sessionizer_client import JobState, Session

SECRETS_NAME = "local-secrets.env"


def local_secrets(var: Path) -> tuple[Path, dict[str, str]]:
    """The local stack's secrets, ``REDIS_PASSWORD`` and ``FLOWER_BASIC_AUTH`` (``admin:...``):
    made on the first start in ``var/local-secrets.env`` (mode 0600, ``NAME=value`` lines), read
    from there afterwards; returns the file and the values."""
    path = var / SECRETS_NAME
    var.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(
                f"REDIS_PASSWORD={secrets.token_urlsafe(24)}\nFLOWER_BASIC_AUTH=admin:{secrets.token_urlsafe(18)}\n"
            )
    os.chmod(path, 0o600)
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return path, values


def redacted(url: str) -> str:
    """``redis://:secret@host:port/0`` -> ``redis://host:port/0``, to print."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


SETTINGS = get_settings().stack
# SESSIONIZER_VAR_DIR moves the data (tests point it at a temporary folder, never the user's var/)
VAR = get_settings().var_dir()
EVENTS_NAME = "demo-events.ndjson"
DEMO_EVENTS = VAR / EVENTS_NAME
DEMO_USERS = ["romain", "anes", "claire", "malik", "sofia", "jules"]
DEMO_START = datetime(2022, 9, 5, tzinfo=UTC)  # a Monday
DEMO_WEEKS = 4
DEMO_ROWS = 60
SCREENS = [
    "connexion",
    "accueil",
    "recherche",
    "fiche_client",
    "devis",
    "facture",
    "planning",
    "stats",
    "parametres",
    "deconnexion",
]


def demo_documents(seed: int = 7) -> list[dict[str, Any]]:
    """A few weeks of several users on several instances: working-hours sessions, idle gaps,
    a lunch break, some users moving between instances, and a handful of malformed documents."""
    rng = np.random.default_rng(seed)
    docs: list[dict[str, Any]] = []
    for u, user in enumerate(DEMO_USERS):
        home = f"instance{100 + u * 7}"
        for day in range(DEMO_WEEKS * 7):
            date = DEMO_START + timedelta(days=day)
            if date.weekday() >= 5 and rng.random() < 0.85:
                continue
            for _ in range(int(rng.integers(1, 5))):
                start = date + timedelta(hours=float(rng.uniform(8, 18)))
                instance = home if rng.random() < 0.8 else f"instance{int(rng.integers(100, 150))}"
                n = int(rng.integers(6, 60))
                t = start
                screens = ["connexion"] + list(rng.choice(SCREENS[1:-1], n - 2)) + ["deconnexion"]
                for screen in screens:
                    iso = t.isoformat()
                    # Half the documents carry epoch milliseconds, as Elasticsearch exports often do.
                    stamp: Any = int(t.timestamp() * 1000) if rng.random() < 0.5 else iso
                    docs.append({"@timestamp": stamp, "util": user, "ecran": str(screen), "instance": instance})
                    t += timedelta(seconds=float(rng.exponential(40.0)) + 1)
    docs.sort(key=lambda d: str(d["@timestamp"]))
    docs += [
        {"@timestamp": "not a date", "util": "romain", "ecran": "accueil", "instance": "instance100"},
        {"@timestamp": "2022-09-06T10:00:00Z", "util": "anes", "ecran": 1, "instance": "instance107"},
        {"@timestamp": "2022-09-07T10:00:00Z", "util": "claire", "instance": "instance114"},
    ]
    return docs


def write_demo_events(path: Path = DEMO_EVENTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        for doc in demo_documents():
            fh.write(json.dumps(doc) + "\n")
    os.replace(tmp, path)
    return path


def _print_progress(job: JobState) -> None:
    p = job.progress
    print(f"   {job.status:<9} users {p.users_done}/{p.users_total}, events scanned {p.events_scanned}", flush=True)


def print_table(sessions: list[Session]) -> None:
    cols = ["user", "instance", "start", "end", "duration_s", "events", "entry_screen", "exit_screen"]
    cells = {
        "start": lambda s: s.start.isoformat(),
        "end": lambda s: s.end.isoformat(),
        "duration_s": lambda s: f"{s.duration_s:.0f}",
    }
    rows = [[cells[c](s) if c in cells else str(getattr(s, c)) for c in cols] for s in sessions]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


class Stopped(Exception):
    """SIGINT or SIGTERM reached the supervisor."""


def _raise_stopped(signum: int, frame: Any) -> None:
    # the first signal stops the stack; more (an impatient Ctrl-C) must not cut that stop short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM raise ``Stopped`` in the main thread, so that ``finally`` stops the
    stack; its children are in sessions of their own, so the terminal's Ctrl-C reaches only us."""
    signal.signal(signal.SIGINT, _raise_stopped)
    signal.signal(signal.SIGTERM, _raise_stopped)


def start_stack(host: str, port: int, stack: Stack, var: Path) -> str:
    # the embedded Redis always requires a password: the var folder's, made on the first start
    secrets_file, local = local_secrets(var)
    stack.start_redis(var / "redis", password=local["REDIS_PASSWORD"])
    print(f"local passwords (Redis, Flower): {secrets_file}", flush=True)
    stack.env.setdefault("EVENTS_PATH", str(var / EVENTS_NAME))
    logs = var / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack.spawn(worker_command(concurrency=2), log=logs / "worker.log")
    stack.spawn(api_command(host, port), log=logs / "api.log")
    base = f"http://{host}:{port}"
    wait_http(f"{base}/healthz", timeout=60)
    return base


def demo(var: Path) -> int:
    events = var / EVENTS_NAME
    if not events.exists():
        write_demo_events(events)
        print(f"wrote demo events to {events}")
    port = SETTINGS.port
    try:
        port = port if port_free(port) else free_port()
    except OSError:
        port = free_port()
    stack = Stack()
    stack.env.setdefault("EVENT_SOURCE", "file")
    stop_on_signals()
    try:
        base = start_stack("127.0.0.1", port, stack, var)
        print(f"API on {base} (Swagger UI: {base}/docs), Redis at {redacted(stack.env['REDIS_URL'])}")
        body = {"users": DEMO_USERS, "start": "2022-09-05T00:00Z", "end": "2022-10-03T00:00Z", "method": "hdbscan"}
        print(f"POST {base}/jobs (Cache-Control: no-cache) {json.dumps(body)}")
        # through the project's own client (client/): retried submit, Prefer: wait polls, streamed
        # sessions; imported here, as `python -m devstack events` runs where it is not installed
        from sessionizer_client import Client, SessionizerError

        with Client(base) as client:
            # fresh (no-cache): an earlier demo's result, still kept in var/redis, would otherwise be
            # shared and the demo would show no scan at all
            job = client.submit(**body, fresh=True)
            print(f"-> 202, Location: {job.data['links']['self']}")
            try:
                job.wait(timeout=300, progress=_print_progress)
            except SessionizerError as exc:  # failed, cancelled, or not done within 5 minutes
                print(f"job {job.status}: {exc}", file=sys.stderr)
                return 1
            print(f"   {job.status}")
            stats = job.stats()
            print_table(list(itertools.islice(job.sessions(), DEMO_ROWS)))
            if stats["sessions"] > DEMO_ROWS:
                # the stack stops as the demo ends: point at one that stays up, not at this one
                print(
                    f"... {stats['sessions'] - DEMO_ROWS} more; to browse them all, `make up` keeps the stack "
                    f"running (then http://127.0.0.1:8000/ or `sessionizer sessions JOB_ID`)"
                )
            print(f"stats: {json.dumps(stats)}")
        return 0
    except Stopped as sig:
        print(f"{sig}: stopping", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def up(var: Path) -> int:
    """Run the stack until SIGINT or SIGTERM, starting again any of its processes that dies."""
    host = SETTINGS.host
    stack = Stack()
    events = var / EVENTS_NAME
    if not stack.env.get("ELASTICSEARCH_URL") and not stack.env.get("EVENTS_PATH") and not events.exists():
        write_demo_events(events)
    stop_on_signals()
    try:
        # the embedded Redis always requires a password: the var folder's, made on the first start
        secrets_file, local = local_secrets(var)
        stack.start_redis(var / "redis", password=local["REDIS_PASSWORD"], bind=host)
        print(f"local passwords (Redis, Flower): {secrets_file}", flush=True)
        stack.env.setdefault("EVENTS_PATH", str(var / EVENTS_NAME))
        logs = var / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        # the API's port is bound here and inherited by gunicorn: taken, it moves to a free one,
        # and it stays this stack's across the API's restarts
        api_socket = listening_socket(host, SETTINGS.port)
        stack.sockets.append(api_socket)
        port = api_socket.getsockname()[1]
        if port != SETTINGS.port:
            print(f"port {SETTINGS.port} is taken: the API listens on {port}", flush=True)
        base = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
        flower = FlowerPort(SETTINGS.flower_port)
        # Flower always asks for a login: FLOWER_BASIC_AUTH if set, else the var folder's
        basic_auth = SETTINGS.flower_basic_auth.value if SETTINGS.flower_basic_auth else local["FLOWER_BASIC_AUTH"]
        supervisor = Supervisor(stack, say=lambda line: print(line, flush=True))
        if stack.redis is not None:
            supervisor.add("redis", lambda: stack.redis.start().proc, running=stack.redis.proc)  # type: ignore[union-attr]
        supervisor.add("worker", lambda: stack.spawn(worker_command(concurrency=2), log=logs / "worker.log"))
        supervisor.add(
            "api",
            lambda: stack.spawn(
                api_command(host, port, fd=api_socket.fileno()), log=logs / "api.log", pass_fds=(api_socket.fileno(),)
            ),
        )
        supervisor.add(
            "flower",
            lambda: stack.spawn(
                flower_command("127.0.0.1", flower.take()),
                log=logs / "flower.log",
                extra_env={"FLOWER_BASIC_AUTH": basic_auth},
            ),
        )
        wait_http(f"{base}/healthz", timeout=60)
        if stack.redis is not None:
            redis_url = stack.redis.public_url()
            more = f"REDIS_URL={redis_url} make worker (PASSWORD: REDIS_PASSWORD in {secrets_file})"
        else:
            redis_url = redacted(stack.env["REDIS_URL"])
            more = "REDIS_URL=<this stack's REDIS_URL> make worker"
        print(
            f"Sessionizer is up: API {base} (Swagger UI {base}/docs), Flower http://127.0.0.1:{flower.port} "
            f"(login in {secrets_file}), Redis {redis_url}; logs in {logs}. Ctrl-C stops everything.\n"
            f"More workers, on this host or another: {more}",
            flush=True,
        )
        while True:
            supervisor.check()
            time.sleep(0.2)
    except Stopped as sig:
        print(f"{sig}: stopping", flush=True)
        return 0
    finally:
        stack.stop()
        print("stopped", flush=True)


class FlowerPort:
    """Flower's port: the configured one when free, otherwise a free one, said aloud; checked at
    each (re)start, as another stack may have taken it meanwhile (Flower cannot inherit a socket)."""

    def __init__(self, wanted: int) -> None:
        self.wanted, self.port = wanted, wanted

    def take(self) -> int:
        if not port_free(self.port):
            old, self.port = self.port, free_port()
            print(f"port {old} is taken: Flower listens on {self.port}", flush=True)
        return self.port


def worker(concurrency: int) -> int:
    """``make worker``: one more worker for a running stack (``REDIS_URL`` and the event source's
    settings from the environment), in the foreground: Ctrl-C or SIGTERM stop it, handing its
    running units back to the others."""
    settings = get_settings()
    if not child_environment().get("REDIS_URL"):  # (the default URL is this host's: not a stack's)
        print(
            "make worker needs REDIS_URL: the one `make up` printed (and the event source's settings: "
            "EVENTS_PATH, or ELASTICSEARCH_URL and its credentials)",
            file=sys.stderr,
        )
        return 2
    print(f"a worker for Redis {redacted(settings.redis.url)}, reading {settings.source_kind} events", flush=True)
    command = worker_command(concurrency=concurrency, name=f"worker{os.getpid()}")
    os.execve(command[0], command, child_environment())  # signals go to Celery itself


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["demo", "up", "worker", "events"])
    parser.add_argument("--concurrency", type=int, default=2, help="make worker: pool processes")
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=VAR,
        help="data folder: Redis data, logs, demo events (default: var/, or SESSIONIZER_VAR_DIR)",
    )
    args = parser.parse_args(argv)
    var = args.var_dir.resolve()
    if args.command == "events":
        print(write_demo_events(var / EVENTS_NAME))
        return 0
    if args.command == "worker":
        return worker(args.concurrency)
    return demo(var) if args.command == "demo" else up(var)


if __name__ == "__main__":
    sys.exit(main())
