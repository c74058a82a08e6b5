"""The job store: every Redis key Sessionizer writes, their lifetimes and their encoding.

Key scheme (``{id}`` is the job id; every key of a job expires ``ttl_s`` after its last write,
24 h by default, and the whole set is refreshed together):

=============================  ======  ===========================================================
``sz:job:{id}``                hash    ``status``, ``request`` (JSON), ``submitted_at``,
                                       ``started_at``, ``finished_at``, ``deadline_at`` (ISO UTC),
                                       ``error`` (JSON), ``units_total``, ``users_total``,
                                       ``stats`` (JSON), ``owner``
``sz:job:{id}:done``           hash    unit index -> number of users the unit covered
``sz:job:{id}:scanned``        hash    unit index -> documents that unit scanned (set, not added:
                                       a redelivered unit overwrites its own figure)
``sz:job:{id}:unitstats``      hash    unit index -> JSON counts of the unit's events and sessions
``sz:job:{id}:sessions``       hash    unit index -> JSON array of the unit's sessions
=============================  ======  ===========================================================

A job moves ``queued -> running -> succeeded | failed | cancelled``; every move is a
compare-and-set in a Lua script, so a late unit can never turn a failed or cancelled job into a
success, and only one unit ever finalises a job. A job past its deadline is failed the next time
anyone looks at it, so no job stays ``running`` forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import redis

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ACTIVE + TERMINAL
PREFIX = "sz:job:"
_SUFFIXES = ("", ":done", ":scanned", ":unitstats", ":sessions")

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


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _keys(job_id: str) -> list[str]:
    return [f"{PREFIX}{job_id}{s}" for s in _SUFFIXES]


@dataclass
class JobStore:
    client: redis.Redis
    ttl_s: int = 86_400

    @classmethod
    def from_url(cls, url: str, ttl_s: int = 86_400) -> "JobStore":
        return cls(redis.Redis.from_url(url, health_check_interval=30), ttl_s)

    def __post_init__(self) -> None:
        self._transition = self.client.register_script(_TRANSITION)

    # --- writing -----------------------------------------------------------------------------
    def create(self, request: Mapping[str, Any], *, deadline_s: float, owner: str = "") -> dict[str, Any]:
        """Record a new ``queued`` job and return it."""
        job_id = str(uuid.uuid4())
        now = utcnow()
        fields = {
            "id": job_id,
            "status": "queued",
            "owner": owner,
            "request": orjson.dumps(request),
            "submitted_at": iso(now),
            "deadline_at": iso(now + timedelta(seconds=deadline_s)),
            "users_total": len(request.get("users", ())),
            "units_total": 0,
        }
        key = _keys(job_id)[0]
        pipe = self.client.pipeline()
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self.ttl_s)
        pipe.execute()
        return self.get(job_id)  # type: ignore[return-value]

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
        """``queued -> running`` with the number of units it was split into."""
        return self._move(job_id, "running", ("queued",), started_at=iso(utcnow()), units_total=units_total)

    def fail(self, job_id: str, error_type: str, message: str) -> bool:
        """Record why a job failed (only an active job can fail)."""
        error = orjson.dumps({"type": error_type, "message": message})
        return self._move(job_id, "failed", ACTIVE, error=error, finished_at=iso(utcnow()))

    def cancel(self, job_id: str, reason: str = "cancelled by the client") -> bool:
        error = orjson.dumps({"type": "cancelled", "message": reason})
        return self._move(job_id, "cancelled", ACTIVE, error=error, finished_at=iso(utcnow()))

    def record_progress(self, job_id: str, unit: int, scanned: int) -> None:
        self.client.hset(_keys(job_id)[2], unit, scanned)

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

    def finish(self, job_id: str) -> bool:
        """``running -> succeeded`` with the summed statistics, once every unit is in."""
        k = _keys(job_id)
        unit_stats = [orjson.loads(v) for v in self.client.hvals(k[3])]
        totals: dict[str, int] = {}
        for s in unit_stats:
            for name, value in s.items():
                totals[name] = totals.get(name, 0) + int(value)
        return self._move(job_id, "succeeded", ("running",), stats=orjson.dumps(totals), finished_at=iso(utcnow()))

    def delete(self, job_id: str) -> bool:
        return bool(self.client.delete(*_keys(job_id)))

    # --- reading -----------------------------------------------------------------------------
    def status(self, job_id: str) -> str | None:
        value = self.client.hget(_keys(job_id)[0], "status")
        return value.decode() if value is not None else None

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job as the API shows it, or ``None`` if it was never issued or has expired."""
        k = _keys(job_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(k[0])
        pipe.hvals(k[1])
        pipe.hvals(k[2])
        raw, done, scanned = pipe.execute()
        if not raw:
            return None
        h = {key.decode(): value.decode() for key, value in raw.items()}
        if h["status"] in ACTIVE and h.get("deadline_at") and utcnow() > datetime.fromisoformat(h["deadline_at"]):
            self.fail(job_id, "deadline_exceeded", f"the job did not finish before its deadline {h['deadline_at']}")
            return self.get(job_id)
        return {
            "id": h["id"],
            "status": h["status"],
            "owner": h.get("owner", ""),
            "request": orjson.loads(h["request"]),
            "progress": {
                "users_total": int(h.get("users_total", 0)),
                "users_done": sum(int(v) for v in done),
                "events_scanned": sum(int(v) for v in scanned),
            },
            "submitted_at": h["submitted_at"],
            "started_at": h.get("started_at"),
            "finished_at": h.get("finished_at"),
            "deadline_at": h.get("deadline_at"),
            "error": orjson.loads(h["error"]) if h.get("error") else None,
            "stats": orjson.loads(h["stats"]) if h.get("stats") else None,
            "units_total": int(h.get("units_total", 0)),
        }

    def sessions(self, job_id: str) -> list[dict[str, Any]]:
        """Every session of a finished job, in unit order (units are planned in user order)."""
        raw = self.client.hgetall(_keys(job_id)[4])
        out: list[dict[str, Any]] = []
        for unit in sorted(raw, key=int):
            out.extend(orjson.loads(raw[unit]))
        return out
