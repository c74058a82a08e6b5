"""The job store: every Redis key Sessionizer writes, their lifetimes and their encoding.

In parts: ``keys`` (the key names, one class per structure), ``scripts/*.lua`` (the atomic steps),
``lifecycle`` (writes), ``reads`` (reads, which never write), ``records`` (what reads return),
``replies`` (Redis replies as values), ``leases`` (units' leases), ``sharing`` (shared results),
``deliveries`` (the completion pushes), the API's guards (``rate_limit``, ``idempotency``,
``wait_slots``), and two structures of their own, ``jobstats`` (job counters) and ``liveness``
(workers' heartbeats); :class:`JobStore` puts the job's parts together.

Key scheme (``{id}`` is a job id, ``{owner}`` the name of the API key that made it, empty when
the API runs without keys; ``ttl`` is ``JOB_TTL_S``, 24 h by default):

=================================  ======  ===================================================  =============
key                                type    content                                              expires
=================================  ======  ===================================================  =============
``sz:job:{id}``                    hash    ``status``, ``request`` (JSON), ``submitted_at``,     ttl after the
                                           ``started_at``, ``finished_at``, ``deadline_at``     last write,
                                           (ISO UTC), ``deadline_ms``, ``error`` (JSON),        the job's keys
                                           ``units_total``, ``users_total``, ``stats`` (JSON),  together
                                           ``owner``, ``seq``; ``primary`` (the job whose
                                           computation it shares, if not its own);
                                           ``fingerprint`` (scoped to the owner unless results
                                           are shared across keys); ``own_deadline_at``;
                                           ``idem`` (its idempotency key);
                                           ``view_status``/``view_error``/``view_finished_at``
                                           (cancelled by its client while the computation goes
                                           on for others); ``deleted`` (forgotten by its
                                           client, kept only for the jobs sharing it)
``sz:job:{id}:done``               hash    unit index -> number of users the unit covered       "
``sz:job:{id}:scanned``            hash    unit index -> documents that unit used, and          "
                                           ``{index}:src`` -> of those, read from the source
                                           itself (set, not added: a redelivered unit
                                           overwrites its figures)
``sz:job:{id}:unitstats``          hash    unit index -> JSON counts of the unit's events       "
``sz:job:{id}:sessions``           hash    unit index -> JSON array of the unit's sessions      "
``sz:job:{id}:sharers``            set     ids of the jobs still following this computation     "
                                           (itself included until cancelled or deleted)
``sz:job:{id}:leases``             hash    unit index -> JSON lease: ``token`` ('' = handed     "
                                           back), ``owner``, ``exp`` (epoch ms, Redis' clock),
                                           ``runs``, ``lost`` (workers it lost; ``leases.py``,
                                           read as ``records.UnitRecord``)
``sz:share:{fingerprint}``         string  id of the computation an identical request reuses    ttl, refreshed
                                                                                                at each reuse
``sz:owner:{owner}:jobs``          zset    the owner's job ids, scored by ``seq`` (listing;     2 x ttl (gone
                                           expired ids are dropped when a listing meets them)   jobs pruned)
``sz:owner:{owner}:active``        set     the owner's job ids that may still be active (the    2 x ttl
                                           concurrent-jobs cap; finished ids dropped at each
                                           submit, which checks the cap atomically)
``sz:idem:{owner}:{sha256(key)}``  string  JSON ``{"body": request digest, "job": id}``; job     60 s while
                                           empty while the first request is being created       pending, then
                                                                                                ttl (the job's)
``sz:rate:{owner}``                hash    token bucket: ``tokens``, ``ts_ms``                  a full refill
``sz:authfail:{sha256(address)}``  hash    failed-authentication bucket of a client address:    a full refill
                                           ``tokens``, ``ts_ms``
``sz:waits:{owner}``               zset    the owner's ``Prefer: wait`` requests in progress:   the longest
                                           a random token each, scored by the time (ms) its     wait; each
                                           wait ends at the latest (a server that died          token drops
                                           mid-wait leaves a token that lapses by itself)       at its score
``sz:hook:{id}``                   hash    a job's completion push: ``url``, ``owner``,         ttl after the
                                           ``type``, ``msg_id``, ``event_at``, ``state``,       last write
                                           ``attempts``, ``next_ms``, ``claim``
                                           (``sessionizer/jobstore/deliveries.py``)
``sz:hook:{id}:attempts``          list    JSON of each attempt (time, status code or error,    "
                                           next try), the last 100
``sz:hooks:due``                   zset    job id -> epoch ms its push is due, or its sender's  never (members
                                           claim lapses (a worker that died mid-send)           leave when done)
``sz:seq``                         string  counter ordering jobs for listings                   never (one
                                                                                                integer)
``sz:secret:cursors``              string  32 random bytes, made by the first API process that   never
                                           needs them: the secret sealing the API's cursors
``sz:stats:scans``                 string  computations started (plans that ran): a shared      never
                                           result adds no scan
``sz:stats:jobs``                  hash    jobs submitted, shared, finished by status, and      never
                                           their durations (``jobstats.py``; read by /metrics)
``sz:workers``                     zset    worker name -> epoch ms its heartbeat expires        with the last
                                           (``liveness.py``; ``/readyz`` counts them)             beat
``sz:live``                        zset    computations that may still need a worker -> epoch   never (ended
                                           ms listed (submitted or started); the reconciler     ones dropped
                                           reads it                                             each pass)
``sz:reconciler``                  string  the reconciling worker's lock (a random token)        its ttl
``sz:stats:reconcile``             hash    reconciler passes, units and plans handed out again  never
=================================  ======  ===================================================  =============

A job moves ``queued -> running -> succeeded | failed | cancelled``; every move is a
compare-and-set in a Lua script, so a late unit can never turn a failed or cancelled job into a
success, and only one unit ever finalises a job. A job past its deadline reads as failed, and is
recorded failed by an explicit step (``expire_overdue``: the API's per-job views and the worker
call it), so no job stays ``running`` forever.

Shared results: a job whose normalised request on the same data (its ``fingerprint``: the request
and the identity of the source it reads, ``sessionizer/datasource.py``) matches a computation that
is queued, running or succeeded follows it (``primary``) instead of being planned; its status,
progress and sessions are the computation's, read through :meth:`JobStore.view`. Joining refreshes
the computation's keys, so they outlive every job following them. Cancelling a job detaches it; the
computation itself is cancelled only when no job follows it any more, and deleting a job removes
the computation's keys only then. The worker only ever sees computation ids (``get``/``status``
answer for the computation); the API reads jobs as their clients see them (``view``).
Scripts name keys derived from the ids they read, so the store assumes one Redis, not a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .idempotency import IDEM_PENDING_S, Idempotency
from .keys import JobKeys
from .leases import LeaseGrant, Leases
from .lifecycle import LeaseLost, Lifecycle, TooManyActiveJobs, iso, utcnow
from .rate_limit import RateLimit
from .reads import Reads
from .records import JobError, JobPage, JobRecord, Progress, UnitRecord, UnitState, UnitTable
from .scripts import Scripts
from .sharing import fingerprint
from .wait_slots import WaitSlots

# The API's store answers or raises within this: /healthz within 1 s, a /jobs request's 503 within 2 s.
FAIL_FAST_TIMEOUT_S = 0.5

__all__ = [
    "IDEM_PENDING_S",
    "JobError",
    "JobKeys",
    "JobPage",
    "JobRecord",
    "JobStore",
    "LeaseGrant",
    "LeaseLost",
    "Progress",
    "TooManyActiveJobs",
    "UnitRecord",
    "UnitState",
    "UnitTable",
    "fingerprint",
    "iso",
    "utcnow",
]


@dataclass
class JobStore(Lifecycle, Leases, Reads):
    """The job store on one Redis: the lifecycle's writes, the units' leases and the reads, plus
    the API's guards (``rate_limit``, ``idempotency``, ``wait_slots``) as parts of their own."""

    client: redis.Redis
    ttl_s: int = 86_400
    # the units' leases this process holds, (job, unit) -> (token, lease ms): a unit's progress renews its lease
    held: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict, init=False, repr=False)
    scripts: Scripts = field(init=False, repr=False)
    rate_limit: RateLimit = field(init=False, repr=False)
    idempotency: Idempotency = field(init=False, repr=False)
    wait_slots: WaitSlots = field(init=False, repr=False)

    @classmethod
    def from_url(cls, url: str, ttl_s: int = 86_400, *, fail_fast: bool = False) -> JobStore:
        """A store on ``url``. The workers' (default) rides out a Redis restart or failover (about
        20 s of retries with backoff) rather than failing a unit half-way; the units' writes are
        idempotent, so a retry is safe. The API's (``fail_fast``) answers within half a second or
        raises, so that a request gets its 503 at once while Redis is down or hung: one retry
        on a fresh connection (a restarted Redis leaves the pooled ones dead), none on a timeout,
        so they never stack up. Either has socket timeouts: a Redis that accepts connections but
        never answers (stopped, overloaded) holds no caller forever."""
        if fail_fast:
            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=FAIL_FAST_TIMEOUT_S,
                socket_timeout=FAIL_FAST_TIMEOUT_S,
                health_check_interval=30,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
            return cls(client, ttl_s)
        retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=14)
        client = redis.Redis.from_url(
            url,
            health_check_interval=30,
            retry=retry,
            socket_connect_timeout=5,
            socket_timeout=30,
            retry_on_error=[redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError],
        )
        return cls(client, ttl_s)

    def cursor_secret(self) -> bytes:
        """The secret every API process seals its cursors with: made once (``SET NX``), so each
        process, and each restart, reads the same one."""
        import secrets

        from .keys import SECRET_KEY
        from .replies import blob

        self.client.set(SECRET_KEY, secrets.token_bytes(32), nx=True)
        secret = self.client.get(SECRET_KEY)
        return blob(secret) if secret is not None else b""

    def __post_init__(self) -> None:
        self.scripts = Scripts.register(self.client)
        self.rate_limit = RateLimit(self.scripts.admit)
        self.idempotency = Idempotency(self.client, self.scripts.idempotency, self.ttl_s)
        self.wait_slots = WaitSlots(self.client, self.scripts.wait_slot)
