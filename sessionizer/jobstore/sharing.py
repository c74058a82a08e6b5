"""Shared results: which requests are the same computation.

A job whose normalised request on the same data (its fingerprint: the request and the identity
of the source it reads, ``sessionizer/datasource.py``) matches a computation that is queued, running
or succeeded follows it (``primary``) instead of being planned; joining happens atomically in
``scripts/submit.lua``, which also refreshes the computation's keys so they outlive every job
following it. Cancelling a job detaches it (``scripts/cancel.lua``); deleting the last follower
removes the computation (``scripts/delete.lua``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
import redis

from .keys import JobKeys
from .replies import text


def fingerprint(request: Mapping[str, Any], source: str = "", scope: str | None = None) -> str:
    """Digest of a normalised request on some data: the same users (in any order), range, method,
    parameters and grouping, read from the same ``source`` (``sessionizer.datasource``: its kind,
    where it is, its field names), give the same fingerprint. With a ``scope`` (an owner), only
    requests of the same scope do: one key's computations are invisible to every other key's."""
    canon = dict(request, users=sorted(request.get("users", ())))
    digest = hashlib.sha256(orjson.dumps({"request": canon, "source": source}, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return digest if scope is None else hashlib.sha256(f"{scope}\n{digest}".encode()).hexdigest()


def computation_of(client: redis.Redis, job_id: str) -> str:
    """The id of the computation a job follows (its own id when it shares nothing)."""
    primary = client.hget(JobKeys(job_id).hash, "primary")
    return text(primary) if primary else job_id
