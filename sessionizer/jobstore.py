"""The job store: every Redis key Sessionizer writes, their lifetimes and their encoding.

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
                                           ``fingerprint``; ``idem`` (its idempotency key);
                                           ``view_status``/``view_error``/``view_finished_at``
                                           (cancelled by its client while the computation goes
                                           on for others); ``deleted`` (forgotten by its
                                           client, kept only for the jobs sharing it);
                                           ``lost:{unit}`` (times that unit was handed out
                                           again after losing its worker)
``sz:job:{id}:done``               hash    unit index -> number of users the unit covered       "
``sz:job:{id}:scanned``            hash    unit index -> documents that unit scanned (set, not  "
                                           added: a redelivered unit overwrites its figure)
``sz:job:{id}:unitstats``          hash    unit index -> JSON counts of the unit's events       "
``sz:job:{id}:sessions``           hash    unit index -> JSON array of the unit's sessions      "
``sz:job:{id}:sharers``            set     ids of the jobs still following this computation     "
                                           (itself included until cancelled or deleted)
``sz:share:{fingerprint}``         string  id of the computation an identical request reuses    ttl, refreshed
                                                                                                at each reuse
``sz:owner:{owner}:jobs``          zset    the owner's job ids, scored by ``seq`` (listing;     2 x ttl (gone
                                           expired ids are dropped when met)                    jobs pruned)
``sz:owner:{owner}:active``        set     the owner's job ids that may still be active (the    2 x ttl
                                           concurrent-jobs cap; finished ids dropped at each
                                           submit, which checks the cap atomically)
``sz:idem:{owner}:{sha256(key)}``  string  JSON ``{"body": request digest, "job": id}``; job     60 s while
                                           empty while the first request is being created       pending, then
                                                                                                ttl (the job's)
``sz:rate:{owner}``                hash    token bucket: ``tokens``, ``ts_ms``                  a full refill
``sz:waits:{owner}``               zset    the owner's ``Prefer: wait`` requests in progress:   the longest
                                           a random token each, scored by the time (ms) its     wait; each
                                           wait ends at the latest (a server that died          token drops
                                           mid-wait leaves a token that lapses by itself)       at its score
``sz:seq``                         string  counter ordering jobs for listings                   never (one
                                                                                                integer)
``sz:stats:scans``                 string  computations started (plans that ran): a shared      never
                                           result adds no scan
``sz:workers``                     zset    worker name -> epoch ms its heartbeat expires        with the last
                                           (``liveness.py``; ``/readyz`` counts them)             beat
=================================  ======  ===================================================  =============

A job moves ``queued -> running -> succeeded | failed | cancelled``; every move is a
compare-and-set in a Lua script, so a late unit can never turn a failed or cancelled job into a
success, and only one unit ever finalises a job. A job past its deadline is failed the next time
anyone looks at it, so no job stays ``running`` forever.

Shared results: a job whose normalised request (its ``fingerprint``) matches a computation that is
queued, running or succeeded follows it (``primary``) instead of being planned; its status,
progress and sessions are the computation's, read through :meth:`JobStore.view`. Joining refreshes
the computation's keys, so they outlive every job following them. Cancelling a job detaches it; the
computation itself is cancelled only when no job follows it any more, and deleting a job removes
the computation's keys only then. The worker only ever sees computation ids (``get``/``status``
answer for the computation); the API reads jobs as their clients see them (``view``).
Scripts name keys derived from the ids they read, so the store assumes one Redis, not a cluster.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .status import ACTIVE, JobStatus

STATUSES = tuple(JobStatus)
PREFIX = "sz:job:"
_SUFFIXES = ("", ":done", ":scanned", ":unitstats", ":sessions", ":sharers")
SEQ_KEY = "sz:seq"
SCANS_KEY = "sz:stats:scans"
IDEM_PENDING_S = 60

# KEYS[1] job hash; ARGV[1] new status; ARGV[2] comma-separated statuses it may come from;
# ARGV[3..] more field/value pairs to write with it. Returns 1 when moved, 0 when not, -1 when gone.
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return -1 end
for allowed in string.gmatch(ARGV[2], '[^,]+') do
  if allowed == cur then
    redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 3))
    return 1
  end
end
return 0
"""

# Create a job, joining the computation an identical request started when there is one.
# KEYS: job hash, share key ('' = not shareable), owner's list, owner's active set, seq counter.
# ARGV: job id, ttl, list ttl, fresh ('1' = never join), now_ms, active cap (0 = none),
# field/value pairs... Returns {'capped', active count} when the owner already has `cap` active
# jobs, else {'ok', id of the computation joined or '' when the job is its own computation}.
_SUBMIT = """
local p = 'sz:job:'
local id, ttl, list_ttl, fresh, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local cap = tonumber(ARGV[6])
if cap > 0 then
  local n = 0
  for _, other in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    local h = redis.call('HMGET', p .. other, 'status', 'primary', 'view_status', 'deleted')
    local st = h[1]
    if h[2] and h[2] ~= '' then st = redis.call('HGET', p .. h[2], 'status') end
    if h[3] or h[4] or (st ~= 'queued' and st ~= 'running') then
      redis.call('SREM', KEYS[4], other)
    else
      n = n + 1
    end
  end
  if n >= cap then return {'capped', tostring(n)} end
end
local cid = nil
if KEYS[2] ~= '' and fresh == '0' then
  local cand = redis.call('GET', KEYS[2])
  if cand then
    local st = redis.call('HMGET', p .. cand, 'status', 'deadline_ms')
    local ok = st[1] == 'queued' or st[1] == 'running' or st[1] == 'succeeded'
    if ok and (st[1] == 'succeeded' or not st[2] or tonumber(st[2]) > now) then cid = cand end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], 'seq', seq)
if cid then
  local comp = redis.call('HMGET', p .. cid, 'deadline_at', 'deadline_ms')
  redis.call('HSET', KEYS[1], 'primary', cid, 'deadline_at', comp[1] or '', 'deadline_ms', comp[2] or '0')
  redis.call('SADD', p .. cid .. ':sharers', id)
  for _, s in ipairs({'', ':done', ':scanned', ':unitstats', ':sessions', ':sharers'}) do
    redis.call('EXPIRE', p .. cid .. s, ttl)
  end
  redis.call('EXPIRE', KEYS[2], ttl)
else
  redis.call('SADD', p .. id .. ':sharers', id)
  redis.call('EXPIRE', p .. id .. ':sharers', ttl)
  if KEYS[2] ~= '' then redis.call('SET', KEYS[2], id, 'EX', ttl) end
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[3], seq, id)
redis.call('EXPIRE', KEYS[3], list_ttl)
redis.call('SADD', KEYS[4], id)
redis.call('EXPIRE', KEYS[4], list_ttl)
return {'ok', cid or ''}
"""

# One round trip for a poll: the job's own hash, its computation's hash, and the progress sums.
# KEYS[1] job hash. Returns {} when gone, else {own, computation (empty when itself), done, scanned}.
_VIEW = """
local own = redis.call('HGETALL', KEYS[1])
if #own == 0 then return {} end
local primary = redis.call('HGET', KEYS[1], 'primary')
local base = KEYS[1]
local comp = {}
if primary and primary ~= '' then
  base = 'sz:job:' .. primary
  comp = redis.call('HGETALL', base)
end
local done, scanned = 0, 0
for _, v in ipairs(redis.call('HVALS', base .. ':done')) do done = done + tonumber(v) end
for _, v in ipairs(redis.call('HVALS', base .. ':scanned')) do scanned = scanned + tonumber(v) end
return {own, comp, done, scanned}
"""

# Cancel a job for its client. KEYS[1] job hash. ARGV: error JSON, finished_at.
# The job stops following its computation; the computation is cancelled when nobody follows it.
# Returns 1 when the job is now cancelled, 0 when it had already finished, -1 when gone.
_CANCEL = """
local p = 'sz:job:'
local own = redis.call('HMGET', KEYS[1], 'status', 'primary', 'view_status', 'id')
if not own[1] then return -1 end
if own[3] then return 0 end
local cid = own[2]
if not cid or cid == '' then cid = own[4] end
local ck = p .. cid
local st = redis.call('HGET', ck, 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('SREM', ck .. ':sharers', own[4])
if redis.call('SCARD', ck .. ':sharers') == 0 then
  redis.call('HSET', ck, 'status', 'cancelled', 'error', ARGV[1], 'finished_at', ARGV[2])
  if ck == KEYS[1] then return 1 end
end
redis.call('HSET', KEYS[1], 'view_status', 'cancelled', 'view_error', ARGV[1], 'view_finished_at', ARGV[2])
return 1
"""

# Forget a job. KEYS[1] job hash, KEYS[2] owner's list. Returns 1 when forgotten, 0 when gone.
# Its computation's keys go too unless another job still follows it.
_DELETE = """
local p = 'sz:job:'
local own = redis.call('HMGET', KEYS[1], 'id', 'primary', 'idem', 'fingerprint', 'deleted')
if not own[1] or own[5] then return 0 end
local id, cid = own[1], own[2]
if not cid or cid == '' then cid = id end
local ck = p .. cid
redis.call('ZREM', KEYS[2], id)
if own[3] and own[3] ~= '' then redis.call('DEL', own[3]) end
redis.call('SREM', ck .. ':sharers', id)
if cid ~= id then redis.call('DEL', KEYS[1]) else redis.call('HSET', KEYS[1], 'deleted', '1') end
if redis.call('SCARD', ck .. ':sharers') == 0 and redis.call('HGET', ck, 'deleted') then
  local fp = redis.call('HGET', ck, 'fingerprint')
  if fp and fp ~= '' and redis.call('GET', 'sz:share:' .. fp) == cid then redis.call('DEL', 'sz:share:' .. fp) end
  for _, s in ipairs({'', ':done', ':scanned', ':unitstats', ':sessions', ':sharers'}) do redis.call('DEL', ck .. s) end
end
return 1
"""

# Token bucket. KEYS[1] bucket. ARGV: rate per second, burst. Returns ms to wait (0 = allowed).
_RATE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts_ms')
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts_ms', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""

# Idempotency: reserve a key, or say what it already holds. KEYS[1] idem key. ARGV: body digest,
# pending ttl. Returns {'new'} | {'pending'} | {'mismatch'} | {'replay', job id}.
_IDEM = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], cjson.encode({body = ARGV[1], job = ''}), 'EX', tonumber(ARGV[2]))
  return {'new'}
end
local d = cjson.decode(v)
if d.body ~= ARGV[1] then return {'mismatch'} end
if d.job == '' then return {'pending'} end
return {'replay', d.job}
"""


# A slot for one ``Prefer: wait`` request. KEYS[1] the owner's waits. ARGV: token, wait ms, cap.
# Lapsed tokens are dropped first. Returns 1 when the slot is taken, 0 when the owner is at the cap.
_WAIT_SLOT = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], now + ms, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], ms) end
return 1
"""


class TooManyActiveJobs(Exception):
    """The owner already has as many queued or running jobs as allowed."""

    def __init__(self, active: int) -> None:
        super().__init__(f"{active} jobs already queued or running")
        self.active = active


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _keys(job_id: str) -> list[str]:
    return [f"{PREFIX}{job_id}{s}" for s in _SUFFIXES]


def owner_jobs_key(owner: str) -> str:
    return f"sz:owner:{owner}:jobs"


def owner_active_key(owner: str) -> str:
    return f"sz:owner:{owner}:active"


def share_key(fingerprint: str) -> str:
    return f"sz:share:{fingerprint}"


def idem_key(owner: str, key: str) -> str:
    return f"sz:idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"


def rate_key(owner: str) -> str:
    return f"sz:rate:{owner}"


def waits_key(owner: str) -> str:
    return f"sz:waits:{owner}"


def fingerprint(request: Mapping[str, Any]) -> str:
    """Digest of a normalised request: the same users (in any order), range, method, parameters
    and grouping give the same fingerprint."""
    canon = dict(request, users=sorted(request.get("users", ())))
    return hashlib.sha256(orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _decode_pairs(flat: list[bytes]) -> dict[str, str]:
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


@dataclass
class JobStore:
    client: redis.Redis
    ttl_s: int = 86_400

    @classmethod
    def from_url(cls, url: str, ttl_s: int = 86_400) -> "JobStore":
        # A Redis restart or failover is ridden out here (about 20 s of retries with backoff)
        # rather than failing a unit half-way; the units' writes are idempotent, so a retry is safe.
        retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=14)
        client = redis.Redis.from_url(
            url, health_check_interval=30, retry=retry,
            retry_on_error=[redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError],
        )
        return cls(client, ttl_s)

    def __post_init__(self) -> None:
        reg = self.client.register_script
        self._transition = reg(_TRANSITION)
        self._submit, self._view, self._cancel, self._delete = reg(_SUBMIT), reg(_VIEW), reg(_CANCEL), reg(_DELETE)
        self._rate, self._idem, self._wait_slot = reg(_RATE), reg(_IDEM), reg(_WAIT_SLOT)

    @property
    def list_ttl_s(self) -> int:
        # a job's keys can outlive their creation by the ttl after its last write (its deadline)
        return 2 * self.ttl_s

    # --- writing -----------------------------------------------------------------------------
    def create(self, request: Mapping[str, Any], *, deadline_s: float, owner: str = "") -> dict[str, Any]:
        """Record a new ``queued`` job, its own computation, and return it."""
        job, _ = self.submit(request, deadline_s=deadline_s, owner=owner, share=False)
        return job

    def submit(
        self,
        request: Mapping[str, Any],
        *,
        deadline_s: float,
        owner: str = "",
        share: bool = True,
        fresh: bool = False,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        max_active: int = 0,
    ) -> tuple[dict[str, Any], bool]:
        """Record a new job; return it as its client sees it, and whether it needs planning.

        Raises :class:`TooManyActiveJobs` when ``max_active`` (> 0) of the owner's jobs are
        already queued or running: the check and the creation are one atomic step.

        With ``share``, a computation of the same fingerprint that is queued, running or
        succeeded is followed instead of planned again (unless ``fresh``); a new computation
        becomes the one later identical requests follow.
        """
        job_id = job_id or str(uuid.uuid4())
        now = utcnow()
        fp = fingerprint(request)
        deadline = now + timedelta(seconds=deadline_s)
        fields: dict[str, Any] = {
            "id": job_id,
            "status": JobStatus.QUEUED,
            "owner": owner,
            "request": orjson.dumps(request),
            "submitted_at": iso(now),
            "deadline_at": iso(deadline),
            "deadline_ms": int(deadline.timestamp() * 1000),
            "users_total": len(request.get("users", ())),
            "units_total": 0,
            "fingerprint": fp,
            "idem": idem_key(owner, idempotency_key) if idempotency_key else "",
        }
        flat: list[Any] = []
        for name, value in fields.items():
            flat += [name, value]
        keys = [_keys(job_id)[0], share_key(fp) if share else "", owner_jobs_key(owner), owner_active_key(owner), SEQ_KEY]
        args = [job_id, self.ttl_s, self.list_ttl_s, "1" if fresh else "0", int(now.timestamp() * 1000), max_active, *flat]
        outcome, detail = self._submit(keys=keys, args=args)
        if outcome == b"capped":
            raise TooManyActiveJobs(int(detail))
        return self.view(job_id), not detail  # type: ignore[return-value]

    def _touch(self, job_id: str, pipe: Any = None) -> None:
        run = pipe if pipe is not None else self.client.pipeline(transaction=False)
        for key in _keys(job_id):
            run.expire(key, self.ttl_s)
        if pipe is None:
            run.execute()

    def _move(self, job_id: str, to: str, allowed_from: tuple[str, ...], **fields: Any) -> bool:
        args: list[Any] = [to, ",".join(allowed_from)]
        for name, value in fields.items():
            args += [name, value]
        moved = self._transition(keys=[_keys(job_id)[0]], args=args)
        if moved == 1:
            self._touch(job_id)
        return moved == 1

    def start(self, job_id: str, units_total: int) -> bool:
        """``queued -> running`` with the number of units it was split into (counts a scan)."""
        moved = self._move(job_id, JobStatus.RUNNING, (JobStatus.QUEUED,), started_at=iso(utcnow()), units_total=units_total)
        if moved:
            self.client.incr(SCANS_KEY)
        return moved

    def fail(self, job_id: str, error_type: str, message: str) -> bool:
        """Record why a computation failed (only an active one can fail)."""
        error = orjson.dumps({"type": error_type, "message": message})
        return self._move(job_id, JobStatus.FAILED, ACTIVE, error=error, finished_at=iso(utcnow()))

    def cancel(self, job_id: str, reason: str = "cancelled by the client") -> bool:
        """Cancel a job; its computation stops unless another job still follows it.

        A job alone on its computation (every job, unless results are shared) is simply
        moved to ``cancelled``; a finished job stays as it is.
        """
        error = orjson.dumps({"type": "cancelled", "message": reason})
        done = self._cancel(keys=[_keys(job_id)[0]], args=[error, iso(utcnow())])
        return done == 1

    def record_progress(self, job_id: str, unit: int, scanned: int) -> None:
        self.client.hset(_keys(job_id)[2], unit, scanned)

    def count_redelivery(self, job_id: str, unit: int) -> int:
        """Count one more hand-out of a unit whose worker was lost; return the count so far."""
        return int(self.client.hincrby(_keys(job_id)[0], f"lost:{unit}", 1))

    def complete_unit(
        self, job_id: str, unit: int, users: int, sessions: list[dict[str, Any]], stats: Mapping[str, int]
    ) -> bool:
        """Store a unit's result (idempotent) and return True when every unit is now done."""
        k = _keys(job_id)
        pipe = self.client.pipeline()
        pipe.hset(k[4], unit, orjson.dumps(sessions))
        pipe.hset(k[3], unit, orjson.dumps(dict(stats)))
        pipe.hset(k[1], unit, users)
        pipe.hlen(k[1])
        pipe.hget(k[0], "units_total")
        self._touch(job_id, pipe)
        res = pipe.execute()
        done, total = res[3], int(res[4] or 0)
        return total > 0 and done >= total

    def done_units(self, job_id: str) -> set[int]:
        """Indices of the units whose result is stored."""
        return {int(k) for k in self.client.hkeys(_keys(job_id)[1])}

    def finish(self, job_id: str) -> bool:
        """``running -> succeeded`` with the summed statistics, once every unit is in."""
        k = _keys(job_id)
        unit_stats = [orjson.loads(v) for v in self.client.hvals(k[3])]
        totals: dict[str, int] = {}
        for s in unit_stats:
            for name, value in s.items():
                totals[name] = totals.get(name, 0) + int(value)
        return self._move(job_id, JobStatus.SUCCEEDED, (JobStatus.RUNNING,), stats=orjson.dumps(totals), finished_at=iso(utcnow()))

    def delete(self, job_id: str) -> bool:
        """Forget a job (cancel it first to stop its work); shared results stay for the others."""
        owner = self.client.hget(_keys(job_id)[0], "owner")
        if owner is None:
            return False
        return bool(self._delete(keys=[_keys(job_id)[0], owner_jobs_key(owner.decode())]))

    # --- reading: the computation, as the worker sees it ----------------------------------------
    def status(self, job_id: str) -> str | None:
        value = self.client.hget(_keys(job_id)[0], "status")
        return value.decode() if value is not None else None

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's computation state, or ``None`` if it was never issued or has expired."""
        return self._read(job_id, client_view=False)

    def scans_started(self) -> int:
        return int(self.client.get(SCANS_KEY) or 0)

    # --- reading: jobs as their clients see them ------------------------------------------------
    def view(self, job_id: str) -> dict[str, Any] | None:
        """The job as its client sees it: a shared computation's state, its own cancellation;
        ``None`` once deleted or expired."""
        return self._read(job_id, client_view=True)

    def _read(self, job_id: str, *, client_view: bool) -> dict[str, Any] | None:
        res = self._view(keys=[_keys(job_id)[0]])
        if not res:
            return None
        own, comp = _decode_pairs(res[0]), _decode_pairs(res[1])
        if client_view and own.get("deleted"):
            return None
        cid = own.get("primary") or job_id
        h = comp if own.get("primary") else own
        if not h:  # the computation expired before the job following it (it should not)
            h = dict(own, status=JobStatus.FAILED, error=orjson.dumps({"type": "result_expired",
                     "message": "the shared result this job followed has expired"}).decode())
        if h["status"] in ACTIVE and h.get("deadline_at") and utcnow() > datetime.fromisoformat(h["deadline_at"]):
            self.fail(cid, "deadline_exceeded", f"the job did not finish before its deadline {h['deadline_at']}")
            return self._read(job_id, client_view=client_view)
        status, error, finished = h["status"], h.get("error"), h.get("finished_at")
        if client_view and own.get("view_status"):
            status, error, finished = own["view_status"], own.get("view_error"), own.get("view_finished_at")
        return {
            "id": own["id"],
            "status": status,
            "owner": own.get("owner", ""),
            "request": orjson.loads(own["request"]),
            "progress": {
                "users_total": int(own.get("users_total", 0)),
                "users_done": int(res[2]),
                "events_scanned": int(res[3]),
            },
            "submitted_at": own["submitted_at"],
            "started_at": h.get("started_at"),
            "finished_at": finished,
            "deadline_at": h.get("deadline_at"),
            "error": orjson.loads(error) if error else None,
            "stats": orjson.loads(h["stats"]) if h.get("stats") else None,
            "units_total": int(h.get("units_total", 0)),
            "computation": cid,
            "seq": int(own.get("seq", 0)),
        }

    def sessions(self, job_id: str) -> list[dict[str, Any]]:
        """Every session of a finished job, in unit order (units are planned in user order)."""
        return [s for _, _, s in self.iter_sessions(job_id)]

    def iter_sessions(self, job_id: str, unit: int = 0, offset: int = 0, batch: int = 64) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """``(unit, offset, session)`` from a position on, reading the units a batch at a time."""
        primary = self.client.hget(_keys(job_id)[0], "primary")
        cid = primary.decode() if primary else job_id
        key = _keys(cid)[4]
        units = sorted(int(u) for u in self.client.hkeys(key))
        units = [u for u in units if u >= unit]
        for i in range(0, len(units), batch):
            chunk = units[i:i + batch]
            for u, raw in zip(chunk, self.client.hmget(key, chunk)):
                if raw is None:
                    continue
                rows = orjson.loads(raw)
                for k in range(offset if u == unit else 0, len(rows)):
                    yield u, k, rows[k]

    def list_jobs(self, owner: str, *, limit: int, before_seq: int | None = None,
                  status: str | None = None, scan_max: int = 1000) -> tuple[list[dict[str, Any]], int | None]:
        """The owner's jobs, newest first, from ``before_seq`` down; and the cursor to go on from
        (``None`` when there is nothing more). At most ``scan_max`` ids are looked at per call, so
        a page filtered by status may hold fewer than ``limit`` jobs yet have a next cursor."""
        key = owner_jobs_key(owner)
        top = f"({before_seq}" if before_seq is not None else "+inf"
        out: list[dict[str, Any]] = []
        scanned = 0
        last: int | None = None
        while scanned < scan_max:
            ids = self.client.zrevrangebyscore(key, top, "-inf", start=0, num=min(limit + 1, scan_max - scanned), withscores=True)
            if not ids:
                return out, None
            for raw_id, score in ids:
                scanned += 1
                job_id, seq = raw_id.decode(), int(score)
                job = self.view(job_id)
                if job is None:
                    self.client.zrem(key, job_id)
                elif status is None or job["status"] == status:
                    if len(out) == limit:
                        return out, last
                    out.append(job)
                last = seq
            top = f"({last}"
        return out, last

    # --- the API's guards ------------------------------------------------------------------------
    def take_token(self, owner: str, rate_per_s: float, burst: int) -> float:
        """Spend one request from the owner's bucket; 0 when allowed, else seconds to wait."""
        return int(self._rate(keys=[rate_key(owner)], args=[rate_per_s, burst])) / 1000

    def take_wait_slot(self, owner: str, token: str, seconds: float, cap: int) -> bool:
        """Count one more wait of the owner's, lasting at most ``seconds``; ``False`` at ``cap``."""
        ms = int(seconds * 1000) + 1000  # the slot outlives the wait by a margin, never the reverse
        return bool(self._wait_slot(keys=[waits_key(owner)], args=[token, ms, cap]))

    def release_wait_slot(self, owner: str, token: str) -> None:
        self.client.zrem(waits_key(owner), token)

    def idempotency_reserve(self, owner: str, key: str, body_digest: str) -> tuple[str, str | None]:
        """``("new", None)`` (reserved for this request), ``("pending", None)``,
        ``("mismatch", None)`` or ``("replay", job id)``."""
        res = self._idem(keys=[idem_key(owner, key)], args=[body_digest, IDEM_PENDING_S])
        return res[0].decode(), (res[1].decode() if len(res) > 1 else None)

    def idempotency_commit(self, owner: str, key: str, body_digest: str, job_id: str) -> None:
        """Bind the key to its job; it then expires with the job."""
        self.client.set(idem_key(owner, key), orjson.dumps({"body": body_digest, "job": job_id}), ex=self.ttl_s)

    def idempotency_release(self, owner: str, key: str) -> None:
        self.client.delete(idem_key(owner, key))
