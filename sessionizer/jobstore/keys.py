"""Every Redis key the project writes, named in one place: one small class per Redis structure
with its ``key_template`` (as rq's registries do). The table in the package docstring says what
each holds and when it expires; the Lua scripts get the same names from :func:`lua_preamble`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from string import Formatter
from typing import ClassVar

from ..status import JobStatus


class KeyTemplate:
    """A Redis structure named by ``key_template``; :meth:`key` fills its fields in order."""

    key_template: ClassVar[str]

    @classmethod
    def key(cls, *parts: str) -> str:
        return cls.key_template.format(**dict(zip(_fields(cls.key_template), parts, strict=True)))


@cache
def _fields(template: str) -> tuple[str, ...]:
    return tuple(field for _, field, _, _ in Formatter().parse(template) if field)


JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def is_job_id(value: str) -> bool:
    """Is ``value`` a job id as the store issues them (``str(uuid.uuid4())``)?"""
    return bool(JOB_ID.match(value))


class _Suffixed:
    """A key of a job's family: the job's hash name and a suffix (``JobKeys(id).done``)."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __get__(self, keys: JobKeys, owner: type[JobKeys]) -> str:
        return keys.hash + self.suffix


@dataclass(frozen=True)
class JobKeys:
    """A job's (or a computation's) keys: its hash, the per-unit hashes and the set of jobs
    following it. They expire together. Only a well-formed id names keys: ``"<id>:done"`` would
    name another key of the same job."""

    job_id: str
    key_template: ClassVar[str] = "sz:job:{id}"
    DONE: ClassVar[str] = ":done"  # hash: unit index -> users the unit covered
    SCANNED: ClassVar[str] = ":scanned"  # hash: unit index -> documents used; "<index>:src" -> from the source
    UNITSTATS: ClassVar[str] = ":unitstats"  # hash: unit index -> JSON counts of the unit's events
    SESSIONS: ClassVar[str] = ":sessions"  # hash: unit index -> JSON array of the unit's sessions
    SHARERS: ClassVar[str] = ":sharers"  # set: ids of the jobs still following the computation
    LEASES: ClassVar[str] = ":leases"  # hash: unit index -> JSON lease of the unit (jobstore/leases.py)
    SUFFIXES: ClassVar[tuple[str, ...]] = ("", DONE, SCANNED, UNITSTATS, SESSIONS, SHARERS, LEASES)

    def __post_init__(self) -> None:
        if not is_job_id(self.job_id):
            raise ValueError("not a job id")

    @property
    def hash(self) -> str:
        return self.key_template.format(id=self.job_id)

    done = _Suffixed(DONE)
    scanned = _Suffixed(SCANNED)
    unitstats = _Suffixed(UNITSTATS)
    sessions = _Suffixed(SESSIONS)
    leases = _Suffixed(LEASES)

    def family(self) -> list[str]:
        """Every key of the job, the hash first."""
        return [self.hash + suffix for suffix in self.SUFFIXES]


class OwnerJobs(KeyTemplate):
    """zset: an owner's job ids scored by ``seq`` (the listing)."""

    key_template = "sz:owner:{owner}:jobs"


class OwnerActive(KeyTemplate):
    """set: an owner's job ids that may still be active (the concurrent-jobs cap)."""

    key_template = "sz:owner:{owner}:active"


class ShareKey(KeyTemplate):
    """string: the id of the computation an identical request reuses."""

    key_template = "sz:share:{fingerprint}"


class IdempotencyKey(KeyTemplate):
    """string: JSON ``{"body": request digest, "job": id}`` for an owner's ``Idempotency-Key``
    (stored by its SHA-256: the key itself is the client's)."""

    key_template = "sz:idem:{owner}:{digest}"


class RateBucket(KeyTemplate):
    """hash: an owner's token bucket (``tokens``, ``ts_ms``)."""

    key_template = "sz:rate:{owner}"


class AuthFailures(KeyTemplate):
    """hash: a client address's failed-authentication bucket (``tokens``, ``ts_ms``). The address
    may come from ``X-Forwarded-For``: it is hashed, so no client text names a key."""

    key_template = "sz:authfail:{address}"

    @classmethod
    def key(cls, *parts: str) -> str:
        return super().key(hashlib.sha256(parts[0].encode()).hexdigest()[:32])


class WaitSlots(KeyTemplate):
    """zset: an owner's ``Prefer: wait`` requests in progress, a token each scored by when it lapses."""

    key_template = "sz:waits:{owner}"


class WebhookDelivery(KeyTemplate):
    """hash: a job's completion push (sessionizer/jobstore/deliveries.py): ``url``, ``owner``,
    ``type``, ``msg_id``, ``event_at``, ``state``, ``attempts`` (in the current series),
    ``next_ms``, ``claim`` (the sender holding it)."""

    key_template = "sz:hook:{id}"


class WebhookAttempts(KeyTemplate):
    """list: a job's push attempts, JSON each (``at``, ``status_code``, ``error``, ``next_try``)."""

    key_template = "sz:hook:{id}:attempts"


WEBHOOKS_DUE_KEY = "sz:hooks:due"  # zset: job id -> epoch ms its push is due (or its sender's claim lapses)
SEQ_KEY = "sz:seq"  # string: counter ordering jobs for listings
SECRET_KEY = "sz:secret:cursors"  # string: random bytes sealing the API's cursors (webapp/cursors.py)
SCANS_KEY = "sz:stats:scans"  # string: computations started (plans that ran)
JOB_STATS_KEY = "sz:stats:jobs"  # hash: jobs submitted, shared, finished, durations (jobstore/jobstats.py)
WORKERS_KEY = "sz:workers"  # zset: worker name -> epoch ms its heartbeat expires (jobstore/liveness.py)
LIVE_KEY = "sz:live"  # zset: computations that may still need a worker -> epoch ms they were planned or submitted
RECONCILER_KEY = "sz:reconciler"  # string: the lock of the worker that reconciles (its random token)
RECONCILE_STATS_KEY = "sz:stats:reconcile"  # hash: reconciler passes and what they handed out again


def lua_preamble() -> str:
    """The names above as Lua locals, prepended to every script: the scripts derive keys from the
    ids they read, and must spell them as this module does."""
    prefix = JobKeys.key_template.split("{", 1)[0]
    share = ShareKey.key_template.split("{", 1)[0]
    lines = [
        f"local JOB = '{prefix}'",
        f"local SHARE = '{share}'",
        f"local DONE, SCANNED, SHARERS = '{JobKeys.DONE}', '{JobKeys.SCANNED}', '{JobKeys.SHARERS}'",
        f"local UNITSTATS, SESSIONS = '{JobKeys.UNITSTATS}', '{JobKeys.SESSIONS}'",
        f"local LEASES = '{JobKeys.LEASES}'",
        "local FAMILY = {" + ", ".join(f"'{s}'" for s in JobKeys.SUFFIXES) + "}",
        f"local HOOK, HOOK_LOG, HOOKS_DUE = '{WebhookDelivery.key('')}', ':attempts', '{WEBHOOKS_DUE_KEY}'",
    ]
    lines += [f"local {status.name} = '{status.value}'" for status in JobStatus]
    return "\n".join(lines) + "\n"
