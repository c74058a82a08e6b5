"""The real stack for the client's tests, owned here: an embedded Redis, a Celery worker subprocess
and three APIs under gunicorn on free ports, plus a real TCP proxy that can misbehave.

- ``api``: keys required (one per test that counts its jobs), a worker behind it (database 0);
- ``idle``: no worker (database 1): jobs stay queued; one ``Prefer: wait`` held per key at a time;
- ``doomed``: no worker, ``JOB_DEADLINE_S=1`` (database 2): every job fails, with its reason;
  a low rate limit (2 requests/s, bursts of 5).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack import local_stack

USERS = ["ana", "ben", "chloe", "01"]
START, END = "2022-09-05T00:00:00Z", "2022-09-08T00:00:00Z"
KEYS = {name: f"test-key-{name}-0123456789abcdef" for name in ("alice", "bob", "proxy", "proxy503", "cli", "pages")}


def write_events(path: Path) -> Path:
    """Three days of four users, two sessions a day each (12 events ~40 s apart, on two instances)."""
    base = datetime(2022, 9, 5, 8, tzinfo=UTC)
    with open(path, "w") as fh:
        for u, user in enumerate(USERS):
            for day in range(3):
                for s in range(2):
                    t = base + timedelta(days=day, hours=4 * s + u, minutes=7 * u)
                    for i in range(12):
                        fh.write(
                            json.dumps(
                                {
                                    "@timestamp": (t + timedelta(seconds=40 * i + (i * u) % 9)).isoformat(),
                                    "util": user,
                                    "ecran": f"screen{i % 3}",
                                    "instance": f"i{s + 1}",
                                }
                            )
                            + "\n"
                        )
    return path


@dataclass
class ClientStack:
    api: str
    idle: str
    doomed: str
    tmp: Path

    @property
    def api_port(self) -> int:
        return int(self.api.rsplit(":", 1)[1])


@pytest.fixture(scope="session")
def client_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClientStack]:
    tmp = tmp_path_factory.mktemp("client-stack")
    events = write_events(tmp / "events.ndjson")
    digests = ",".join(f"{n}:{hashlib.sha256(k.encode()).hexdigest()}" for n, k in KEYS.items())
    with local_stack(tmp, workers=0, apis=0) as stack:
        stack.add_worker(
            2,
            name="client-tests",
            db=0,
            EVENT_SOURCE="file",
            EVENTS_PATH=str(events),
            EVENT_STORE_DIR=str(tmp / "cache"),
        )
        yield ClientStack(
            api=stack.add_api(1, name="api", db=0, API_KEYS=digests, AUTH_REQUIRED="true", RATE_LIMIT_PER_S="0"),
            idle=stack.add_api(1, name="idle", db=1, RATE_LIMIT_PER_S="0", MAX_WAITS_PER_KEY="1"),
            doomed=stack.add_api(
                1, name="doomed", db=2, JOB_DEADLINE_S="1", RATE_LIMIT_PER_S="2", RATE_LIMIT_BURST="5"
            ),
            tmp=tmp,
        )


class Proxy:
    """A real TCP proxy in front of the API, for faults no server can be asked to make.

    ``drop_first_post``: the first ``POST /jobs`` is forwarded, the API's answer awaited, then
    both connections are closed without a byte of it reaching the client.
    ``fail_first=N``: the first N requests are answered ``503`` with ``Retry-After`` (not forwarded).
    Everything else is relayed as is. The fault is applied to a connection's first request; the
    client under test opens a new connection after each (the answers close theirs).
    """

    def __init__(
        self, upstream_port: int, *, drop_first_post: bool = False, fail_first: int = 0, retry_after: str = "1"
    ) -> None:
        self.upstream_port, self.drop_first_post, self.fail_first = upstream_port, drop_first_post, fail_first
        self.retry_after = retry_after
        self.requests: list[bytes] = []  # first line of each connection's first request
        self.dropped = self.refused = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body

    def _handle(self, conn: socket.socket) -> None:
        request = self._read_request(conn)
        if not request:
            conn.close()
            return
        with self.lock:
            self.requests.append(request.split(b"\r\n", 1)[0])
            refuse = self.refused < self.fail_first
            drop = not refuse and self.drop_first_post and not self.dropped and request.startswith(b"POST /jobs ")
            self.refused += refuse
            self.dropped += drop
        if refuse:
            body = b'{"type": "about:blank", "title": "Service Unavailable", "status": 503}'
            conn.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
                b"Retry-After: " + self.retry_after.encode() + b"\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        upstream.sendall(request)
        if drop:
            upstream.recv(1)  # the API has answered, so the job exists; the client never hears of it
            upstream.close()
            conn.close()
            return
        threading.Thread(target=self._pipe, args=(conn, upstream), daemon=True).start()
        self._pipe(upstream, conn)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


@pytest.fixture
def proxy_factory(client_stack: ClientStack) -> Iterator:
    made: list[Proxy] = []

    def make(**kwargs: object) -> Proxy:
        made.append(Proxy(client_stack.api_port, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for p in made:
        p.close()
