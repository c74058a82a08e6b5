"""Send one completion push: sign it, post it through the SSRF guard, record the attempt and
what follows (Standard Webhooks: any 2xx delivers, 410 stops, anything else is retried on
``WEBHOOK_RETRY_SCHEDULE_S``, later when the receiver's ``Retry-After`` asks for later).

The guard sits in the connection itself: httpx's connection pool gets a network backend that
resolves the host, refuses unless every address is public, and connects to the address it
checked. A name that resolved to a public address at submit and to a private one now (DNS
rebinding) is refused here; no proxy from the environment is used (``trust_env=False``), and
redirects are not followed (a 3xx is a failed attempt).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import httpcore
import httpx
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from sessionizer.jobstore.deliveries import Deliveries, Push, iso_ms, now_ms
from sessionizer.settings import Settings
from sessionizer.webhooks.guard import Refused, Resolver, checked_addresses, split_url
from sessionizer.webhooks.signing import secret_for, sign

log = logging.getLogger(__name__)

USER_AGENT = "sessionizer-webhooks/1"
LONGEST_WAIT_S = 86_400  # a Retry-After beyond a day is read as a day
# urllib3's reading of Retry-After (RFC 9110: delta-seconds or an HTTP-date), capped at a day
_RETRY_AFTER = Retry(retry_after_max=LONGEST_WAIT_S)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's own socket backend, connecting only to addresses the guard accepts."""

    def __init__(self, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> None:
        self.allow_private, self.resolver = allow_private, resolver
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in checked_addresses(host, port, self.allow_private, self.resolver):
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"could not connect to {host}")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise Refused("unix sockets are not called")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport on a pool whose connections go through :class:`GuardedBackend` (httpx
    takes no network backend of its own, so its pool is rebuilt with one)."""

    def __init__(self, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> None:
        super().__init__(trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBackend(allow_private, resolver),
        )


def http_client(settings: Settings, resolver: Resolver = socket.getaddrinfo) -> httpx.Client:
    allow = settings.webhooks.allow_private
    return httpx.Client(
        transport=GuardedTransport(allow, resolver),
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(settings.webhooks.timeout_s),
    )


def schedule(settings: Settings) -> list[float]:
    """Seconds before each retry (``WEBHOOK_RETRY_SCHEDULE_S``)."""
    return [float(x) for x in settings.webhooks.retry_schedule_s.split(",") if x.strip()]


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date, at most a day); ``None`` when
    absent or unreadable."""
    if not value:
        return None
    try:
        return float(_RETRY_AFTER.parse_retry_after(value))
    except (InvalidHeader, ValueError, OverflowError):  # not a number, nor a date mktime can place
        return None


def attempt(push: Push, settings: Settings, client: httpx.Client) -> tuple[int | None, str | None, float | None]:
    """Post the push once: (status code or None, error or None, the receiver's Retry-After)."""
    hooks = settings.webhooks
    secret = secret_for(
        push.owner,
        hooks.secret.value if hooks.secret else None,
        hooks.secrets.value if hooks.secrets else None,
    )
    if not secret:
        return None, "no webhook secret is configured for this API key", None
    body = push.body()
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": push.msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, push.msg_id, stamp, body),
    }
    try:
        split_url(push.url, settings.webhooks.allow_private)
        # only the status line and headers are awaited: the receiver's body is never read
        with client.stream("POST", push.url, content=body, headers=headers) as resp:
            return resp.status_code, None, retry_after_s(resp.headers.get("retry-after"))
    except Refused as exc:
        return None, f"refused: {exc}", None
    except httpx.TimeoutException:
        return None, f"timed out after {settings.webhooks.timeout_s:g} s", None
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200]}", None


def deliver(deliveries: Deliveries, push: Push, settings: Settings, client: httpx.Client) -> str:
    """One attempt of a claimed push, recorded with what follows; returns the outcome."""
    at = now_ms()
    status, error, wait = attempt(push, settings, client)
    delays = schedule(settings)
    if status is not None and 200 <= status < 300:
        outcome, next_ms = "delivered", None
    elif status == 410:
        outcome, next_ms = "stopped", None  # the receiver is gone for good: no more pushes for this job
    elif push.attempts < len(delays):
        delay = max(delays[push.attempts], min(wait or 0.0, LONGEST_WAIT_S))
        outcome, next_ms = "retry", now_ms() + int(delay * 1000)
    else:
        outcome, next_ms = "failed", None
    record = {"at": iso_ms(at), "status_code": status, "error": error, "next_try": iso_ms(next_ms) if next_ms else None}
    if not deliveries.record(push, record, outcome, next_ms):
        log.info("push of job %s: redelivered or taken over meanwhile; this attempt is not recorded", push.job_id)
    elif outcome != "delivered":
        log.info(
            "push of job %s: attempt %d %s (%s)", push.job_id, push.attempts + 1, outcome, error or f"HTTP {status}"
        )
    return outcome


def drain(deliveries: Deliveries, settings: Settings, client: httpx.Client, token: str, limit: int = 20) -> int:
    """Send the pushes due now that no other sender holds; returns how many were attempted."""
    # a claim outlasts the longest attempt (connect + answer), so no second sender takes it meanwhile
    claim_s = 2 * settings.webhooks.timeout_s + 30
    sent = 0
    for job_id in deliveries.due(limit):
        push = deliveries.claim(job_id, claim_s, token)
        if push is not None:
            deliver(deliveries, push, settings, client)
            sent += 1
    return sent
