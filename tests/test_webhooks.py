"""Completion pushes (Standard Webhooks): the SSRF guard's decisions, the signatures (checked with
the ``standardwebhooks`` package, not our code), the Redis records, and whole jobs pushing to a
real receiver on loopback through a real worker.

No test here ever connects outside loopback: every test that could send (the API's submit, the
sender) runs under ``no_outside_connections``, which fails any connect to another address before
it is made, even if the guard were broken. Names are resolved by a stub, never by DNS.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import standardwebhooks

from sessionizer.jobstore import JobStore
from sessionizer.jobstore.deliveries import Deliveries
from sessionizer.jobstore.keys import WEBHOOKS_DUE_KEY, JobKeys, WebhookAttempts, WebhookDelivery
from sessionizer.settings import load_settings
from sessionizer.webhooks.guard import Refused, checked_addresses, is_public, refusal, split_url
from sessionizer.webhooks.signing import new_secret, parse_secrets, secret_for, sign
from sessionizer_client import InvalidSignature, verify_webhook
from tests.helpers import PAST, WorkerProcess, assert_problem, play_worker, session, wait_finished, worker_env
from tests.liveserver import wait_until
from worker.webhooks.sender import GuardedBackend, attempt, drain, http_client, retry_after_s

SECRET = new_secret()
HOOK_ENV = {
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_SECRET": SECRET,
    "WEBHOOK_RETRY_SCHEDULE_S": "0.3,0.3,0.3",
    "WEBHOOK_TIMEOUT_S": "1",
    "WEBHOOK_POLL_INTERVAL_S": "0.1",
}
BODY = {"users": ["romain"], "start": "2022-09-22T00:00Z", "end": "2022-09-30T00:00Z", "method": "gap"}


# --- the socket guard: no connection leaves loopback -------------------------------------------
class OutsideConnection(AssertionError):
    """A test tried to connect outside loopback."""


def loopback_only(family: int, address: Any) -> bool:
    """May a test connect to ``address``? Unix sockets and loopback IP literals only (a name is
    refused: connect would resolve it)."""
    if family == getattr(socket, "AF_UNIX", None):
        return True
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.fixture
def no_outside_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every connect of this process to a non-loopback address fails at once (before any packet),
    and fails the test at teardown even if the error was caught."""
    tried: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not loopback_only(self.family, address):
            tried.append(address)
            raise OutsideConnection(f"a test tried to connect to {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not loopback_only(self.family, address):
            tried.append(address)
            raise OutsideConnection(f"a test tried to connect to {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield tried
    assert not tried, f"connections outside loopback were attempted: {tried}"


def test_the_socket_guard_lets_loopback_through_and_nothing_else() -> None:
    assert loopback_only(socket.AF_INET, ("127.0.0.1", 80)) and loopback_only(socket.AF_INET6, ("::1", 80, 0, 0))
    assert loopback_only(socket.AF_INET6, ("::ffff:127.0.0.1", 80, 0, 0)) and loopback_only(socket.AF_UNIX, "/tmp/x")
    for address in ("10.0.0.1", "93.184.216.34", "169.254.169.254", "2606:2800:220:1::1", "localhost", "example.com"):
        assert not loopback_only(socket.AF_INET, (address, 443)), address


def test_the_socket_guard_fails_a_connect_before_it_is_made(no_outside_connections: list[Any]) -> None:
    with socket.socket() as sock, pytest.raises(OutsideConnection):
        sock.connect(("10.255.255.1", 9))
    no_outside_connections.clear()  # the attempt was this test's point


# --- the SSRF guard's decisions -----------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fc00::1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "255.255.255.255",
        "::",
    ],
)
def test_private_loopback_link_local_and_reserved_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1", "::ffff:93.184.216.34"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(address)


def stub_resolver(table: dict[str, list[str]]) -> Any:
    """``getaddrinfo`` from a table: no DNS server is ever asked."""

    def resolve(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]
        ]

    return resolve


def test_names_are_judged_on_every_address_they_resolve_to() -> None:
    resolve = stub_resolver(
        {
            "hooks.example.com": ["93.184.216.34"],
            "inside.example.com": ["10.0.0.7"],
            "mixed.example.com": ["93.184.216.34", "192.168.0.2"],
            "v6.example.com": ["fd00::5"],
            "meta.example.com": ["169.254.169.254"],
        }
    )
    assert checked_addresses("hooks.example.com", 443, False, resolve) == ["93.184.216.34"]
    assert refusal("https://hooks.example.com/x", False, resolve) is None
    for name in ("inside", "mixed", "v6", "meta"):
        why = refusal(f"https://{name}.example.com/hook", False, resolve)
        assert why and "private" in why, name
        assert refusal(f"https://{name}.example.com/hook", True, resolve) is None  # the development flag
    assert "does not resolve" in refusal("https://nowhere.example.com/", False, resolve)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://93.184.216.34/hook", "Only https"),
        ("ftp://93.184.216.34/", "Only https"),
        ("not a url", "Only https"),
        ("https://", "no host"),
        ("https://user:pw@93.184.216.34/", "credentials"),
        ("https://93.184.216.34:99999/", "Not a URL"),
        ("https://127.0.0.1/hook", "private"),
        ("https://10.0.0.1/", "private"),
        ("https://169.254.169.254/latest", "private"),
        ("https://[::1]:8443/", "private"),
        ("https://[::ffff:10.0.0.1]/", "private"),
    ],
)
def test_urls_refused_without_the_development_flag(url: str, reason: str) -> None:
    why = refusal(url, False, stub_resolver({}))  # literals need no resolver: getaddrinfo parses them
    assert why is not None and reason in why, (url, why)


def test_the_development_flag_allows_http_and_loopback_only_where_it_is_set() -> None:
    assert split_url("http://127.0.0.1:8080/h", True) == ("127.0.0.1", 8080)
    with pytest.raises(Refused, match="Only https"):
        split_url("http://127.0.0.1:8080/h", False)
    with pytest.raises(Refused, match="http and https"):
        split_url("file:///etc/passwd", True)


def test_the_sender_checks_the_address_it_connects_to(no_outside_connections: list[Any]) -> None:
    """DNS rebinding: a name that now resolves to a private address is refused at connect time,
    through httpx's real connection path, and no connection is attempted."""
    rebound = stub_resolver({"hooks.example.com": ["10.0.0.9"]})
    backend = GuardedBackend(allow_private=False, resolver=rebound)
    with pytest.raises(Refused, match="private"):
        backend.connect_tcp("hooks.example.com", 443)
    settings = load_settings(overrides={"WEBHOOK_SECRET": SECRET})
    with http_client(settings, resolver=rebound) as client, pytest.raises(Refused):
        client.post("https://hooks.example.com/hook", content=b"{}")
    push = _push("https://hooks.example.com/hook")
    status, error, _ = attempt(push, settings, http_client(settings, resolver=rebound))
    assert status is None and error.startswith("refused:") and "10.0.0.9" in error


def _push(url: str) -> Any:
    from sessionizer.jobstore.deliveries import Push

    job = str(uuid.uuid4())
    return Push(job, url, "", "job.succeeded", f"msg_{job}", "2026-01-01T00:00:00.000Z", 0, "t")


# --- signatures ---------------------------------------------------------------------------------
def test_our_signature_verifies_with_the_standardwebhooks_package() -> None:
    body = orjson.dumps({"type": "job.succeeded", "timestamp": "2026-01-01T00:00:00Z", "data": {"id": "x"}})
    stamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SECRET, "msg_1", stamp, body),
    }
    assert standardwebhooks.Webhook(SECRET).verify(body, headers)["data"]["id"] == "x"
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(body, headers)


def test_the_clients_verifier_accepts_the_packages_signatures_and_refuses_the_rest() -> None:
    hook = standardwebhooks.Webhook(SECRET)
    body = b'{"type":"job.failed","timestamp":"2026-01-01T00:00:00Z","data":{"id":"j"}}'
    now = time.time()
    from datetime import datetime

    def headers(at: float, payload: bytes = body) -> dict[str, str]:
        stamp = datetime.fromtimestamp(at, UTC)
        return {
            "Webhook-Id": "msg_j",
            "Webhook-Timestamp": str(int(at)),
            "Webhook-Signature": hook.sign("msg_j", stamp, payload),
        }

    assert verify_webhook(headers(now), body, SECRET)["type"] == "job.failed"
    assert verify_webhook(headers(now - 290), body, SECRET)["data"] == {"id": "j"}  # within 5 minutes of skew
    rotating = dict(headers(now), **{"Webhook-Signature": "v1,bm90IGl0 " + headers(now)["Webhook-Signature"]})
    assert verify_webhook(rotating, body, SECRET)["type"] == "job.failed"
    for bad in (headers(now - 310), headers(now + 310)):
        with pytest.raises(InvalidSignature, match="too far"):
            verify_webhook(bad, body, SECRET)
    with pytest.raises(InvalidSignature, match="no signature"):
        verify_webhook(headers(now), body.replace(b"failed", b"succeeded"), SECRET)
    with pytest.raises(InvalidSignature, match="no signature"):
        verify_webhook(headers(now), body, new_secret())
    with pytest.raises(InvalidSignature, match="missing"):
        verify_webhook({"webhook-id": "msg_j"}, body, SECRET)


def test_secrets_per_key_and_their_configuration_errors_name_no_secret() -> None:
    alice, batch = new_secret(), new_secret()
    spec = f"alice:{alice}, batch:{batch}"
    assert parse_secrets(spec) == {"alice": alice, "batch": batch}
    assert secret_for("alice", None, spec) == alice and secret_for("carol", None, spec) is None
    assert secret_for("", SECRET, spec) == SECRET and secret_for("", None, spec) is None
    with pytest.raises(ValueError, match="entry 2") as err:
        parse_secrets(f"alice:{alice},batch:whsec_!!{alice[8:]}")
    assert alice not in str(err.value) and alice[8:] not in str(err.value)


def test_retry_after_as_seconds_or_a_date() -> None:
    assert retry_after_s("7") == 7.0 and retry_after_s(None) is None and retry_after_s("soon") is None
    assert 55 <= retry_after_s(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))) <= 60


# --- a receiver on loopback ---------------------------------------------------------------------
class Receiver:
    """An HTTP server on 127.0.0.1 answering each path by a script: a list of (status, headers,
    seconds to hang) used in turn, the last one repeated; records every request."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[tuple[int, dict[str, str], float]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.lock:
                    n = sum(1 for r in outer.requests if r["path"] == self.path)
                    outer.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.time()}
                    )
                    script = outer.scripts.get(self.path, [(200, {}, 0.0)])
                status, headers, hang = script[min(n, len(script) - 1)]
                if hang:
                    time.sleep(hang)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def got(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def verified(request: dict[str, Any]) -> dict[str, Any]:
    """The event, its signature checked by the standardwebhooks package."""
    return standardwebhooks.Webhook(SECRET).verify(request["body"], request["headers"])


# --- submit-time refusals, through the API, with no connection outside loopback ---------------
@pytest.fixture
def hook_app(redis_url: str) -> Any:
    """The API on this test's own database (no worker consumes it) with pushes configured but the
    development flag off: the guard as deployed."""
    from webapp import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_url, "WEBHOOK_SECRET": SECRET})


@pytest.mark.parametrize(
    "url, reason",
    [
        ("not a url", "Only https"),
        ("http://93.184.216.34/hook", "Only https"),
        ("https://127.0.0.1/hook", "private"),
        ("https://10.0.0.1/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "private"),
        ("https://[::1]/hook", "private"),
        ("https://localhost:8443/hook", "private"),
        ("https://user:pw@93.184.216.34/hook", "credentials"),
        ("https://" + "a" * 2100 + ".com/", "2048"),
    ],
)
def test_a_refused_callback_url_is_a_422_naming_it(
    hook_app: Any, no_outside_connections: list[Any], url: str, reason: str
) -> None:
    body = assert_problem(hook_app.test_client().post("/jobs", json={**BODY, "callback_url": url}), 422)
    assert list(body["errors"]) == ["callback_url"] and reason in " ".join(body["errors"]["callback_url"]), body


def test_a_public_callback_is_accepted_without_connecting_and_needs_a_secret(
    redis_url: str, hook_app: Any, no_outside_connections: list[Any]
) -> None:
    from webapp import create_app

    client = hook_app.test_client()
    resp = client.post("/jobs", json={**BODY, "callback_url": "https://93.184.216.34/hook"})
    assert resp.status_code == 202, resp.get_json()
    job = resp.get_json()
    assert "callback_url" not in job["request"]  # the job's, not the computation's
    got = client.get(f"/jobs/{job['id']}/deliveries").get_json()
    assert got == {
        "callback_url": "https://93.184.216.34/hook",
        "type": None,
        "webhook_id": None,
        "state": "waiting",
        "next_try": None,
        "attempts": [],
    }
    assert assert_problem(client.post(f"/jobs/{job['id']}/deliveries/redeliver"), 409)
    unsigned = create_app({"TESTING": True, "REDIS_URL": redis_url}).test_client()
    body = assert_problem(unsigned.post("/jobs", json={**BODY, "callback_url": "https://93.184.216.34/h"}), 422)
    assert "secret" in body["errors"]["callback_url"][0] and SECRET not in str(body)
    plain = client.post("/jobs", json={**BODY, "users": ["anes"]}).get_json()
    assert client.get(f"/jobs/{plain['id']}/deliveries").get_json()["state"] == "none"
    doc = client.get("/openapi.json").get_json()
    assert "callback_url" in doc["components"]["schemas"]["JobArgs"]["properties"]
    assert "/jobs/{job_id}/deliveries/redeliver" in doc["paths"]


# --- pushes sent in this process (the sender's code, under the socket guard) -----------------
@pytest.fixture
def local(redis_url: str, events_file: Path) -> Any:
    """The API with the development flag on (on the planted events file, so results are shared),
    and the sender run here, on demand."""
    from webapp import create_app

    app = create_app(
        {"TESTING": True, "REDIS_URL": redis_url, "EVENT_SOURCE": "file", "EVENTS_PATH": str(events_file), **HOOK_ENV}
    )
    svc = app.extensions["sessionizer"]
    deliveries = Deliveries(svc.store.client, svc.store.ttl_s, svc.store.scripts)

    class Local:
        client = app.test_client()
        store: JobStore = svc.store

        @staticmethod
        def send(token: str = "here") -> int:
            with http_client(svc.settings) as http:
                return drain(deliveries, svc.settings, http, token)

    Local.deliveries = deliveries  # type: ignore[attr-defined]
    return Local


def test_cancelled_and_failed_jobs_push_their_event_once(
    local: Any, receiver: Receiver, no_outside_connections: list[Any]
) -> None:
    cancelled = local.client.post("/jobs", json={**BODY, "callback_url": receiver.url("/c")}).get_json()
    failed = local.client.post("/jobs", json={**BODY, "users": ["anes"], "callback_url": receiver.url("/f")}).get_json()
    assert local.send() == 0  # nothing has ended
    assert local.client.post(f"/jobs/{cancelled['id']}/cancel").status_code == 202
    assert local.store.fail(failed["id"], "source_unavailable", "the source went away")
    assert local.client.post(f"/jobs/{cancelled['id']}/cancel").status_code == 202  # again: no second push
    assert local.send() == 2
    (c,), (f,) = receiver.got("/c"), receiver.got("/f")
    assert verified(c) == {
        "type": "job.cancelled",
        "timestamp": verified(c)["timestamp"],
        "data": {
            "id": cancelled["id"],
            "status": "cancelled",
            "links": {"self": f"/jobs/{cancelled['id']}", "sessions": f"/jobs/{cancelled['id']}/sessions"},
        },
    }
    assert verified(f)["type"] == "job.failed" and verified(f)["data"]["id"] == failed["id"]
    assert c["headers"]["webhook-id"] == f"msg_{cancelled['id']}" and c["headers"]["content-type"] == "application/json"
    assert b'sessions":[' not in f["body"]  # the event, never the sessions
    assert local.send() == 0


def test_jobs_sharing_a_computation_each_get_their_own_push(
    local: Any, receiver: Receiver, no_outside_connections: list[Any]
) -> None:
    shared = {**BODY, "start": PAST["start"], "end": PAST["end"], "users": ["romain", "anes"]}
    first = local.client.post("/jobs", json={**shared, "callback_url": receiver.url("/a")}).get_json()
    second = local.client.post("/jobs", json={**shared, "callback_url": receiver.url("/b")}).get_json()
    quiet = local.client.post("/jobs", json=shared).get_json()  # no callback: no push
    assert second["shared"] and quiet["shared"]
    play_worker(local.store, first["id"], [[session("anes", 0)], [session("romain", 1)]])
    late = local.client.post("/jobs", json={**shared, "callback_url": receiver.url("/late")}).get_json()
    assert late["shared"] and late["status"] == "succeeded"
    assert local.send() == 3
    for path, job in (("/a", first), ("/b", second), ("/late", late)):
        (req,) = receiver.got(path)
        assert verified(req)["data"]["id"] == job["id"] and verified(req)["type"] == "job.succeeded"
    assert len(receiver.requests) == 3


def test_retries_follow_the_schedule_and_retry_after_and_survive_a_new_sender(
    local: Any, receiver: Receiver, no_outside_connections: list[Any]
) -> None:
    receiver.scripts["/r"] = [(503, {"Retry-After": "2"}, 0.0), (500, {}, 0.0), (200, {}, 0.0)]
    job = local.client.post("/jobs", json={**BODY, "callback_url": receiver.url("/r")}).get_json()
    local.client.post(f"/jobs/{job['id']}/cancel")
    assert local.send("first-worker") == 1
    got = local.client.get(f"/jobs/{job['id']}/deliveries").get_json()
    (first,) = got["attempts"]
    assert first["status_code"] == 503 and got["state"] == "pending" and got["next_try"] == first["next_try"]
    # Retry-After (2 s) over the schedule's 0.3 s; the next try waits for it
    assert _ms(first["next_try"]) - _ms(first["at"]) >= 2000
    # the first sender is gone: the push is in Redis, and another sender takes it when due
    wait_until(lambda: local.send("second-worker") == 1, timeout=30)
    wait_until(lambda: local.send("second-worker") == 1, timeout=30)
    got = local.client.get(f"/jobs/{job['id']}/deliveries").get_json()
    assert [a["status_code"] for a in got["attempts"]] == [503, 500, 200] and got["state"] == "delivered"
    requests = receiver.got("/r")
    assert requests[1]["at"] >= _ms(first["next_try"]) / 1000 - 0.01  # not before Retry-After said
    assert len({r["headers"]["webhook-id"] for r in requests}) == 1 and all(verified(r) for r in requests)
    assert local.store.client.zscore(WEBHOOKS_DUE_KEY, job["id"]) is None


def test_a_410_stops_and_an_exhausted_schedule_fails(
    local: Any, receiver: Receiver, no_outside_connections: list[Any]
) -> None:
    receiver.scripts["/gone"] = [(410, {}, 0.0)]
    receiver.scripts["/down"] = [(500, {}, 0.0)]
    gone = local.client.post("/jobs", json={**BODY, "callback_url": receiver.url("/gone")}).get_json()
    down = local.client.post(
        "/jobs", json={**BODY, "users": ["anes"], "callback_url": receiver.url("/down")}
    ).get_json()
    for job in (gone, down):
        local.client.post(f"/jobs/{job['id']}/cancel")
    wait_until(lambda: (local.send(), local.store.client.zcard(WEBHOOKS_DUE_KEY) == 0)[1], timeout=30)
    assert local.client.get(f"/jobs/{gone['id']}/deliveries").get_json()["state"] == "stopped"
    assert len(receiver.got("/gone")) == 1
    down_state = local.client.get(f"/jobs/{down['id']}/deliveries").get_json()
    assert down_state["state"] == "failed" and len(down_state["attempts"]) == 4  # the first + 3 retries
    assert down_state["attempts"][-1]["next_try"] is None and len(receiver.got("/down")) == 4
    # sent again on request, with the same webhook-id and a fresh schedule
    resp = local.client.post(f"/jobs/{gone['id']}/deliveries/redeliver")
    assert resp.status_code == 202 and resp.get_json()["state"] == "pending"
    receiver.scripts["/gone"] = [(410, {}, 0.0), (204, {}, 0.0)]
    assert local.send() == 1
    assert local.client.get(f"/jobs/{gone['id']}/deliveries").get_json()["state"] == "delivered"
    first, again = receiver.got("/gone")
    assert first["headers"]["webhook-id"] == again["headers"]["webhook-id"] and verified(again)


def test_a_deleted_job_sends_nothing_more(local: Any, receiver: Receiver, no_outside_connections: list[Any]) -> None:
    receiver.scripts["/d"] = [(500, {}, 0.0)]
    job = local.client.post("/jobs", json={**BODY, "callback_url": receiver.url("/d")}).get_json()
    local.client.post(f"/jobs/{job['id']}/cancel")
    assert local.send() == 1 and len(receiver.got("/d")) == 1
    assert local.client.delete(f"/jobs/{job['id']}").status_code == 204
    # nothing left behind, nothing due: no sender can find it any more
    assert local.store.client.zscore(WEBHOOKS_DUE_KEY, job["id"]) is None
    assert not local.store.client.exists(WebhookDelivery.key(job["id"]), WebhookAttempts.key(job["id"]))
    assert local.send() == 0 and len(receiver.got("/d")) == 1


def test_a_push_whose_job_is_gone_is_dropped_by_its_sender(
    local: Any, receiver: Receiver, no_outside_connections: list[Any]
) -> None:
    job = local.client.post("/jobs", json={**BODY, "callback_url": receiver.url("/x")}).get_json()
    local.client.post(f"/jobs/{job['id']}/cancel")
    local.store.client.delete(JobKeys(job["id"]).hash)  # as if it had expired
    assert local.send() == 0 and receiver.got("/x") == []
    assert local.store.client.zscore(WEBHOOKS_DUE_KEY, job["id"]) is None
    assert not local.store.client.exists(WebhookDelivery.key(job["id"]))


def test_one_sender_at_a_time_holds_a_push(local: Any) -> None:
    job = local.client.post("/jobs", json={**BODY, "callback_url": "http://127.0.0.1:9/never"}).get_json()
    local.client.post(f"/jobs/{job['id']}/cancel")
    deliveries = local.deliveries
    push = deliveries.claim(job["id"], 2.0, "a")
    assert push is not None and push.type == "job.cancelled"
    assert deliveries.claim(job["id"], 2.0, "b") is None  # held by a
    wait_until(lambda: deliveries.claim(job["id"], 60, "b") is not None, timeout=10)  # a's claim lapsed (a died)
    assert not deliveries.record(push, {"at": "x"}, "delivered")  # a's late answer is not recorded
    assert local.store.client.zscore(WEBHOOKS_DUE_KEY, job["id"]) is not None


def _ms(stamp: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


# --- whole jobs through a real worker -------------------------------------------------------------
@pytest.fixture(scope="module")
def hook_worker(redis_databases: Any, events_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real worker (its sender thread included) with short retries, and the API on its database."""
    from webapp import create_app

    tmp = tmp_path_factory.mktemp("hook-worker")
    url = redis_databases.take()
    env = worker_env(
        url, EVENT_SOURCE="file", EVENTS_PATH=str(events_file), EVENT_STORE_DIR=str(tmp / "cache"), **HOOK_ENV
    )
    worker = WorkerProcess(env, tmp / "worker.log").start()
    app = create_app(
        {"TESTING": True, "REDIS_URL": url, "EVENT_SOURCE": "file", "EVENTS_PATH": str(events_file), **HOOK_ENV}
    )
    yield app.test_client()
    worker.stop()
    with redis.Redis.from_url(url) as r:
        r.flushdb()
    redis_databases.give_back(url)


@pytest.mark.slow
def test_a_finished_job_pushes_a_signed_event_from_the_worker(hook_worker: Any, receiver: Receiver) -> None:
    resp = hook_worker.post(
        "/jobs", json={**BODY, "callback_url": receiver.url("/done")}, headers={"Cache-Control": "no-cache"}
    )
    job = wait_finished(hook_worker, resp.get_json()["id"])
    assert job["status"] == "succeeded"
    wait_until(lambda: receiver.got("/done"), timeout=30)
    (req,) = receiver.got("/done")
    event = verified(req)
    assert event["type"] == "job.succeeded" and event["data"]["status"] == "succeeded"
    assert event["data"]["links"]["sessions"] == f"/jobs/{job['id']}/sessions"
    assert req["headers"]["webhook-id"] == f"msg_{job['id']}"
    assert abs(int(req["headers"]["webhook-timestamp"]) - req["at"]) < 300
    wait_until(lambda: hook_worker.get(f"/jobs/{job['id']}/deliveries").get_json()["state"] == "delivered", timeout=30)
    (only,) = hook_worker.get(f"/jobs/{job['id']}/deliveries").get_json()["attempts"]
    assert only["status_code"] == 200 and only["error"] is None and only["next_try"] is None


@pytest.mark.slow
@pytest.mark.parametrize("first", [(500, {}, 0.0), (200, {}, 3.0)], ids=["500", "hangs"])
def test_a_receiver_that_fails_then_answers_is_retried_by_the_worker(
    hook_worker: Any, receiver: Receiver, first: tuple[int, dict[str, str], float]
) -> None:
    receiver.scripts["/flaky"] = [first, (200, {}, 0.0)]
    resp = hook_worker.post(
        "/jobs",
        json={**BODY, "users": ["anes"], "callback_url": receiver.url("/flaky")},
        headers={"Cache-Control": "no-cache"},
    )
    job_id = resp.get_json()["id"]
    wait_finished(hook_worker, job_id)
    wait_until(lambda: hook_worker.get(f"/jobs/{job_id}/deliveries").get_json()["state"] == "delivered", timeout=30)
    attempts = hook_worker.get(f"/jobs/{job_id}/deliveries").get_json()["attempts"]
    assert len(attempts) == 2 and attempts[1]["status_code"] == 200
    assert attempts[0]["status_code"] == 500 if first[0] == 500 else "timed out" in attempts[0]["error"]
    assert _ms(attempts[1]["at"]) >= _ms(attempts[0]["next_try"])  # on schedule, not before
    assert all(verified(r)["data"]["id"] == job_id for r in receiver.got("/flaky"))


def test_each_key_signs_with_its_own_secret_and_sees_only_its_own_deliveries(
    redis_url: str, receiver: Receiver, no_outside_connections: list[Any]
) -> None:
    from webapp import create_app
    from webapp.auth import digest

    keys = {"alice": "hook-key-alice-0123456789", "bob": "hook-key-bob-9876543210"}
    secrets = {"alice": new_secret(), "bob": new_secret()}
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": redis_url,
            "AUTH_REQUIRED": True,
            "API_KEYS": ",".join(f"{n}:{digest(k)}" for n, k in keys.items()),
            "WEBHOOK_SECRETS": ",".join(f"{n}:{s}" for n, s in secrets.items()),
            **{k: v for k, v in HOOK_ENV.items() if k != "WEBHOOK_SECRET"},
        }
    )
    client = app.test_client()
    auth = {n: {"Authorization": f"Bearer {k}"} for n, k in keys.items()}
    jobs = {
        n: client.post(
            "/jobs", json={**BODY, "users": [n], "callback_url": receiver.url(f"/{n}")}, headers=auth[n]
        ).get_json()
        for n in keys
    }
    for n, job in jobs.items():
        assert client.post(f"/jobs/{job['id']}/cancel", headers=auth[n]).status_code == 202
    svc = app.extensions["sessionizer"]
    with http_client(svc.settings) as http:
        assert drain(Deliveries(svc.store.client, svc.store.ttl_s, svc.store.scripts), svc.settings, http, "t") == 2
    for n in keys:
        (req,) = receiver.got(f"/{n}")
        other = secrets["bob" if n == "alice" else "alice"]
        assert standardwebhooks.Webhook(secrets[n]).verify(req["body"], req["headers"])["data"]["id"] == jobs[n]["id"]
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            standardwebhooks.Webhook(other).verify(req["body"], req["headers"])
    assert (
        client.get(f"/jobs/{jobs['alice']['id']}/deliveries", headers=auth["alice"]).get_json()["state"] == "delivered"
    )
    assert_problem(client.get(f"/jobs/{jobs['alice']['id']}/deliveries", headers=auth["bob"]), 404)
    assert_problem(client.post(f"/jobs/{jobs['alice']['id']}/deliveries/redeliver", headers=auth["bob"]), 404)
    body = str(client.get(f"/jobs/{jobs['bob']['id']}/deliveries", headers=auth["bob"]).get_json())
    assert not any(s in body for s in secrets.values())
