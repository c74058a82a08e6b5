"""The API under its real server (gunicorn, gevent workers): slow and waiting clients do not stall
it, the server's own errors are problem+json, chunked bodies are bounded, the access log keeps no
secret, and a stop with requests in flight ends every process."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.liveserver import KEYS, LiveServer, bearer, parse_answer, read_answer, wait_until

pytestmark = pytest.mark.slow  # gunicorn subprocesses

FUTURE = {"users": ["romain"], "start": "2998-12-31T00:00Z", "end": "2999-01-01T00:00Z", "method": "gap"}
HELD = 64  # slow connections, and waits, held open at once


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # No worker runs: a submitted job stays queued, so a wait on it lasts until it is cancelled.
    live = LiveServer(tmp_path_factory.mktemp("serving"), MAX_WAITS_PER_KEY=str(HELD), MAX_WAIT_S="60").start()
    yield live
    live.stop()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30) as client:
        yield client


def submit(http: httpx.Client, key: str = "alpha", tag: str = "") -> str:
    resp = http.post("/jobs", json={**FUTURE, "users": [f"romain{tag}"]}, headers=bearer(key))
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def slow_body(server: LiveServer) -> socket.socket:
    """Headers announcing 1000 bytes of body, then 10 of them, and nothing more."""
    sock = server.connect()
    sock.sendall(
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {KEYS['alpha']}\r\n".encode()
        + b"Content-Length: 1000\r\n\r\n"
        + b'{"users": '
    )
    return sock


def waiting(server: LiveServer, job_id: str, key: str = "alpha") -> socket.socket:
    sock = server.connect()
    sock.sendall(
        f"GET /jobs/{job_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nPrefer: wait=60\r\n"
        f"Authorization: Bearer {KEYS[key]}\r\n\r\n".encode()
    )
    return sock


def held_waits(server: LiveServer, key: str = "alpha") -> int:
    return redis.Redis.from_url(server.redis.url).zcard(f"sz:waits:{key}")


def test_slow_and_waiting_clients_do_not_stall_the_api(server: LiveServer, http: httpx.Client) -> None:
    job_id = submit(http)
    slow = [slow_body(server) for _ in range(HELD)]
    waits = [waiting(server, job_id) for _ in range(HELD)]
    try:
        try:
            wait_until(lambda: held_waits(server) == HELD)  # every wait is in progress at once
        except AssertionError:
            raise AssertionError(
                f"{held_waits(server)} waits held of {HELD}; server log:\n" + server.log.read_text()[-4000:]
            ) from None
        for _ in range(10):  # meanwhile the API answers everyone else
            assert http.get("/healthz").json() == {"status": "ok", "redis": "ok"}
            poll = http.get(f"/jobs/{job_id}", headers=bearer("alpha"))
            assert poll.status_code == 200 and poll.json()["status"] == "queued"
        assert http.post("/jobs", json={**FUTURE, "users": ["other"]}, headers=bearer("beta")).status_code == 202
        # the key holds its MAX_WAITS_PER_KEY waits: one more is answered at once, not held
        over = http.get(f"/jobs/{job_id}", headers={**bearer("alpha"), "Prefer": "wait=60"})
        assert over.status_code == 200 and "preference-applied" not in over.headers
        # another key's waits are its own
        beta_job = submit(http, "beta", "-b")
        other = http.get(f"/jobs/{beta_job}", headers={**bearer("beta"), "Prefer": "wait=1"})
        assert other.headers["preference-applied"] == "wait=1"
        # the job ends: every wait answers with it, and gives its slot back
        assert http.post(f"/jobs/{job_id}/cancel", headers=bearer("alpha")).status_code == 202
        for sock in waits:
            status, headers, body = parse_answer(read_answer(sock))
            assert status == 200 and headers["preference-applied"] == "wait=60"
            assert json.loads(body)["status"] == "cancelled"
        assert held_waits(server) == 0
    finally:
        for sock in slow + waits:
            sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /jobs?" + b"q" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: secret-" + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret-\x01key\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Bad\x7f: secret\r\n\r\n", 400),
        (b"GET /\x00healthz HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"BREW /healthz HTCPCP/1.0\r\n\r\n", 400),
    ],
)
def test_the_servers_own_errors_are_problem_json(server: LiveServer, request_bytes: bytes, status: int) -> None:
    got, headers, body = parse_answer(server.raw(request_bytes))
    assert got == status
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert b"secret" not in body  # nothing of the offending request is echoed


def chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def post_chunked(server: LiveServer, payload: bytes) -> tuple[int, dict[str, str], bytes]:
    head = (
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        + f"Authorization: Bearer {KEYS['alpha']}\r\n\r\n".encode()
    )
    return parse_answer(server.raw(head + payload))


def test_a_chunked_body_is_counted_and_cut_at_one_mebibyte(server: LiveServer) -> None:
    big = json.dumps({**FUTURE, "users": ["x" * (2 << 20)]}).encode()
    status, headers, body = post_chunked(server, chunked(big))
    assert status == 413 and headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 413
    # just under the limit is read whole (and then judged on its content: a user name too long)
    near = json.dumps({**FUTURE, "users": ["x" * ((1 << 20) - 200)]}).encode()
    assert len(near) <= 1 << 20
    status, _, body = post_chunked(server, chunked(near, 1000))
    assert status == 422 and "users" in json.loads(body)["errors"]
    status, _, body = post_chunked(server, chunked(json.dumps({**FUTURE, "users": ["chunky"]}).encode(), 7))
    assert status == 202 and json.loads(body)["request"]["users"] == ["chunky"]


def test_a_malformed_chunk_is_a_400_problem(server: LiveServer) -> None:
    status, headers, body = post_chunked(server, b"zz\r\nabc\r\n0\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/problem+json"


def test_the_access_log_keeps_no_query_string_nor_key(server: LiveServer, http: httpx.Client) -> None:
    secret = "s3cret-in-the-query-9f8e7d"
    http.get(f"/jobs?api_key={secret}", headers={**bearer("beta"), "Referer": f"https://x.test/p?token={secret}"})
    http.get(f"/healthz?key={secret}")
    wait_until(lambda: "/healthz?<redacted>" in server.log.read_text())
    log = server.log.read_text()
    assert secret not in log and KEYS["beta"] not in log
    assert '"GET /jobs?<redacted> HTTP/1.1"' in log


def test_gunicorn_stops_with_waits_in_flight(tmp_path: Path) -> None:
    """SIGTERM to the master while requests wait: it exits (its graceful timeout cuts the waits),
    every worker with it, and the port is free."""
    import psutil

    live = LiveServer(tmp_path).start()
    try:
        with httpx.Client(base_url=live.base, timeout=30) as http:
            job_id = submit(http)
        socks = [waiting(live, job_id) for _ in range(8)]
        wait_until(lambda: held_waits(live) == 8)
        workers = psutil.Process(live.proc.pid).children()
        assert len(workers) == 2
        assert live.stop() == 0
        psutil.wait_procs(workers, timeout=10)
        assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
        assert not live.port_listening()
        for sock in socks:
            sock.close()
        log = live.log.read_text()
        assert "Traceback" not in log and "MonkeyPatchWarning" not in log, log[-3000:]
    finally:
        live.stop()


def test_a_client_that_gives_up_stops_holding_its_wait(server: LiveServer, http: httpx.Client) -> None:
    job_id = submit(http, "beta", "-gone")
    socks = [waiting(server, job_id, "beta") for _ in range(8)]
    wait_until(lambda: held_waits(server, "beta") == 8)
    for sock in socks:
        sock.close()
    # each wait notices its closed connection at its next look (well before MAX_WAIT_S, 60 s)
    wait_until(lambda: held_waits(server, "beta") == 0, timeout=30)
