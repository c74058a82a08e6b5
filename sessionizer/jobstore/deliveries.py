"""The completion pushes in Redis: one record per job that asked for one (``sz:hook:{id}``), its
attempts (``sz:hook:{id}:attempts``), and one sorted set of the pushes due (``sz:hooks:due``,
scored by the epoch ms each is due). Keys: ``jobstore/keys.py``; steps: ``jobstore/scripts/hook_*.lua``.

Why a sorted set in Redis rather than Celery's countdown: a retry may wait 24 hours, far beyond
the broker's visibility timeout (a countdown task is held unacknowledged by one worker all that
time, and redelivered to others when the timeout passes). Here a due push is taken by one sender
at a time (:meth:`Deliveries.claim` moves its due time to the end of the claim, atomically), and
one a worker took before dying is taken again when its claim lapses: pushes survive restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import redis

from .keys import WEBHOOKS_DUE_KEY, JobKeys, WebhookAttempts, WebhookDelivery
from .replies import text, text_pairs
from .scripts import Scripts

KEPT_ATTEMPTS = 100


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Push:
    """A job's completion push as a sender takes it."""

    job_id: str
    url: str
    owner: str
    type: str
    msg_id: str
    event_at: str
    attempts: int  # made so far in the current series (a redelivery starts a new one)
    token: str

    def body(self) -> bytes:
        """The event, never the sessions: the client fetches those from ``links.sessions``."""
        base = f"/jobs/{self.job_id}"
        return orjson.dumps(
            {
                "type": self.type,
                "timestamp": self.event_at,
                "data": {
                    "id": self.job_id,
                    "status": self.type.removeprefix("job."),
                    "links": {"self": base, "sessions": f"{base}/sessions"},
                },
            }
        )


@dataclass(frozen=True)
class Delivery:
    """A job's push as the API shows it (``GET /jobs/<id>/deliveries``)."""

    url: str
    type: str
    msg_id: str
    state: str  # pending, delivered, stopped (410), failed (schedule exhausted)
    next_try: str | None
    attempts: list[dict[str, Any]] = field(default_factory=list)


class Deliveries:
    """The pushes on one Redis; ``ttl_s`` is the jobs' (a push is kept as long as its job)."""

    def __init__(self, client: redis.Redis, ttl_s: int, scripts: Scripts | None = None) -> None:
        self.client, self.ttl_s = client, ttl_s
        scripts = scripts or Scripts.register(client)
        self._enqueue, self._claim = scripts.hook_enqueue, scripts.hook_claim
        self._record, self._redeliver = scripts.hook_record, scripts.hook_redeliver

    def on_final(self, job_id: str, *, fan_out: bool) -> int:
        """A job (``fan_out``: every job following this computation) has ended: record the push of
        each that gave a ``callback_url``, once. Returns how many were recorded."""
        at = now_ms()
        args = ["sharers" if fan_out else "self", at, iso_ms(at), self.ttl_s]
        return int(self._enqueue(keys=[JobKeys(job_id).hash], args=args))

    def due(self, limit: int = 20, at_ms: int | None = None) -> list[str]:
        """Ids of the jobs whose push is due now, soonest first."""
        at = now_ms() if at_ms is None else at_ms
        due = cast(list[bytes], self.client.zrangebyscore(WEBHOOKS_DUE_KEY, "-inf", at, start=0, num=limit))
        return [text(member) for member in due]

    def claim(self, job_id: str, claim_s: float, token: str) -> Push | None:
        """Take a due push for ``claim_s`` seconds; ``None`` when it is not due, another sender has
        it, or its job was deleted or has expired (then it is dropped)."""
        reply = self._claim(args=[job_id, now_ms(), int(claim_s * 1000), token])
        if not isinstance(reply, list):
            return None
        h = text_pairs(reply)  # the push's hash, as HGETALL gives it
        return Push(
            job_id,
            h["url"],
            h.get("owner", ""),
            h["type"],
            h["msg_id"],
            h["event_at"],
            int(h.get("attempts", 0)),
            token,
        )

    def record(self, push: Push, attempt: dict[str, Any], outcome: str, next_ms: int | None = None) -> bool:
        """Record an attempt and what follows: ``retry`` at ``next_ms``, or ``delivered``,
        ``stopped`` (410) or ``failed`` (the schedule is spent). False when the claim was lost."""
        args = [push.job_id, push.token, orjson.dumps(attempt), outcome, next_ms or "", self.ttl_s, KEPT_ATTEMPTS]
        return bool(self._record(args=args))

    def redeliver(self, job_id: str) -> bool:
        """Send a job's push again now, with a fresh schedule; False when it has none."""
        if self._redeliver(args=[job_id, now_ms(), self.ttl_s]):
            return True
        self.on_final(job_id, fan_out=False)  # a final job whose push was never recorded
        return bool(self._redeliver(args=[job_id, now_ms(), self.ttl_s]))

    def forget(self, job_id: str) -> None:
        """Drop a job's push and its attempts (the job was deleted); a send in flight records nothing."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(WEBHOOKS_DUE_KEY, job_id)
        pipe.delete(WebhookDelivery.key(job_id), WebhookAttempts.key(job_id))
        pipe.execute()

    def read(self, job_id: str) -> Delivery | None:
        """A job's push and its attempts, oldest first; ``None`` when it has none."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(WebhookDelivery.key(job_id))
        pipe.lrange(WebhookAttempts.key(job_id), 0, -1)
        raw, attempts = pipe.execute()
        if not raw:
            return None
        h = {k.decode(): v.decode() for k, v in raw.items()}
        next_ms = h.get("next_ms")
        return Delivery(
            h["url"],
            h["type"],
            h["msg_id"],
            h["state"],
            iso_ms(int(next_ms)) if h["state"] == "pending" and next_ms else None,
            [orjson.loads(a) for a in attempts],
        )
