"""``Idempotency-Key``: a retried submit gets back the job the first one made.

A key is reserved while its request is being created (``IDEM_PENDING_S``), then bound to its job
for the job's lifetime; a failed submit releases it, and deleting the job frees it
(``scripts/delete.lua``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson
import redis
from redis.commands.core import Script

from .keys import IdempotencyKey
from .replies import text

IDEM_PENDING_S = 60


def idem_key(owner: str, key: str) -> str:
    """The Redis key of an owner's ``Idempotency-Key`` (by its digest: the key is the client's)."""
    return IdempotencyKey.key(owner, hashlib.sha256(key.encode()).hexdigest())


@dataclass(frozen=True)
class Idempotency:
    client: redis.Redis
    script: Script
    ttl_s: int

    def reserve(self, owner: str, key: str, body_digest: str) -> tuple[str, str | None]:
        """``("new", None)`` (reserved for this request), ``("pending", None)``,
        ``("mismatch", None)`` or ``("replay", job id)``."""
        reply = self.script(keys=[idem_key(owner, key)], args=[body_digest, IDEM_PENDING_S])
        state, *job = (text(part) for part in reply)  # {state} or {'replay', job id}: scripts/idempotency.lua
        return state, job[0] if job else None

    def commit(self, owner: str, key: str, body_digest: str, job_id: str) -> None:
        """Bind the key to its job; it then expires with the job."""
        self.client.set(idem_key(owner, key), orjson.dumps({"body": body_digest, "job": job_id}), ex=self.ttl_s)

    def release(self, owner: str, key: str) -> None:
        self.client.delete(idem_key(owner, key))
