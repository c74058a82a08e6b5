"""Units' leases: which worker runs a unit, until when, and how many workers it has lost.

A unit moves ``dispatched -> leased (owner, token, expiry) -> done``. A worker takes the lease
atomically as it starts the unit (``scripts/lease_acquire.lua``), renews it while it works, and
its result is stored only while it still holds the lease (``complete_unit.lua`` checks the
token): a worker that lost its lease (cut off, paused, too slow) cannot write its result, so at
most one copy of a unit completes. Expiries are read on Redis' clock (``TIME``), so hosts need
not agree on the time.

The reconciler (``worker/reconcile.py``) reads :meth:`Leases.unit_table` for every computation
in ``sz:live`` and hands out again the units that are neither done nor held by a live lease.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from .keys import LIVE_KEY, JobKeys
from .scripts import Scripts


@dataclass(frozen=True)
class LeaseGrant:
    """What taking a unit's lease gave: ``outcome`` is ``ok`` (``token`` is the lease), ``gone``
    (the job is not running), ``done``, ``held`` (a live lease of ``holder`` has it) or ``lost``
    (its workers died ``lost`` times: the job must fail)."""

    outcome: str
    token: str = ""
    runs: int = 0
    lost: int = 0
    holder: str = ""
    holder_token: str = ""


@dataclass(frozen=True)
class Lease:
    """A unit's lease as stored: ``token`` empty once handed back; ``exp`` epoch ms (Redis' clock)."""

    token: str
    owner: str
    exp: int
    runs: int
    lost: int

    def live(self, now_ms: int) -> bool:
        return bool(self.token) and self.exp > now_ms


@dataclass(frozen=True)
class UnitTable:
    """One computation's units at one instant (read in one transaction)."""

    status: str | None
    units: frozenset[int]
    done: frozenset[int]
    leases: dict[int, Lease] = field(default_factory=dict)
    now_ms: int = 0


class Leases:
    """The lease writes and reads of :class:`~sessionizer.jobstore.JobStore` (a mixin: ``client``,
    ``ttl_s``, ``scripts``, ``held``: the leases this process holds, (job, unit) -> token)."""

    client: redis.Redis
    ttl_s: int
    scripts: Scripts
    held: dict[tuple[str, int], tuple[str, int]]

    def acquire_unit(
        self, job_id: str, unit: int, owner: str, *, lease_s: float, max_lost: int, dead_token: str = ""
    ) -> LeaseGrant:
        """Take a unit's lease for ``lease_s`` (see :class:`LeaseGrant`). ``dead_token``: the token
        of a holder the caller knows is dead (a pool process of its own host), taken over at once."""
        token = secrets.token_hex(16)
        lease_ms = int(lease_s * 1000)
        args = [unit, token, owner, lease_ms, max_lost, dead_token, self.ttl_s]
        reply = self.scripts.lease_acquire(keys=[JobKeys(job_id).hash], args=args)
        outcome = reply[0].decode()
        if outcome == "ok":
            self.held[(job_id, unit)] = (token, lease_ms)
            return LeaseGrant("ok", token, runs=int(reply[1]), lost=int(reply[2]))
        if outcome == "held":
            return LeaseGrant("held", holder=reply[1].decode(), holder_token=reply[2].decode())
        if outcome == "lost":
            return LeaseGrant("lost", lost=int(reply[1]))
        return LeaseGrant(outcome)

    def renew_unit(self, job_id: str, unit: int, token: str, lease_s: float) -> str:
        """Extend a lease its holder still has: ``renewed``; ``gone`` when the unit has no lease
        any more (stored, or its job gone); ``lost`` once another worker took it over."""
        reply = int(self.scripts.lease_renew(keys=[JobKeys(job_id).hash], args=[unit, token, int(lease_s * 1000)]))
        return {1: "renewed", 0: "gone"}.get(reply, "lost")

    def release_unit(self, job_id: str, unit: int, *, token: str = "", owner: str = "") -> bool:
        """Hand a unit back (a clean stop): its lease is released, and not counted as lost.
        By ``token``, or by ``owner`` (a worker's main process knows which process ran the unit)."""
        self.held.pop((job_id, unit), None)
        return bool(self.scripts.lease_release(keys=[JobKeys(job_id).hash], args=[unit, token, owner]))

    def forget_lease(self, job_id: str, unit: int) -> None:
        """This process no longer works on the unit (its progress stops renewing the lease)."""
        self.held.pop((job_id, unit), None)

    def register_live(self, job_id: str) -> None:
        """List a computation that needs planning (the reconciler plans it again if its plan is lost)."""
        self.client.zadd(LIVE_KEY, {job_id: self.server_ms()}, nx=True)

    def live_jobs(self) -> list[tuple[str, int]]:
        """The computations that may still need a worker, with when they were listed (epoch ms)."""
        return [(m.decode(), int(s)) for m, s in self.client.zrange(LIVE_KEY, 0, -1, withscores=True)]

    def forget_live(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self.client.zrem(LIVE_KEY, *ids)

    def unit_users(self, job_id: str, unit: int) -> list[str] | None:
        """The users of one unit, as the job's plan recorded them (``None`` if it has no such unit)."""
        plan = self.unit_plan(job_id)  # type: ignore[attr-defined]  # (reads.py)
        return plan[unit] if plan is not None and 0 <= unit < len(plan) else None

    def unit_table(self, job_id: str) -> UnitTable:
        """The computation's status, planned units, done units and leases, read at once."""
        k = JobKeys(job_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hmget(k.hash, "status", "units_total", "units").hkeys(k.done).hgetall(k.leases).time()
            (status, total, plan), done, leases, (secs, micros) = pipe.execute()
        table: dict[int, Lease] = {}
        for unit, raw in leases.items():
            d: dict[str, Any] = orjson.loads(raw)
            table[int(unit)] = Lease(d["token"], d["owner"], int(d["exp"]), int(d["runs"]), int(d["lost"]))
        # a started job's plan is recorded with it (Lifecycle.start); without one, none is known
        units = frozenset(range(int(total))) if plan and total else frozenset()
        return UnitTable(
            status.decode() if status is not None else None,
            units,
            frozenset(int(u) for u in done),
            table,
            int(secs) * 1000 + int(micros) // 1000,
        )

    def server_ms(self) -> int:
        secs, micros = self.client.time()
        return int(secs) * 1000 + int(micros) // 1000
