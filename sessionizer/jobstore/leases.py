"""Units' leases: which worker runs a unit, until when, and how many workers it has lost.

A unit moves ``dispatched -> running (owner, token, lease deadline) -> done`` (``UnitRecord``). A worker takes the lease
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson
import redis

from ..status import JobStatus
from .keys import LIVE_KEY, JobKeys
from .records import UnitRecord, UnitState, UnitTable
from .replies import text
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


class Leases:
    """The lease writes and reads of :class:`~sessionizer.jobstore.JobStore` (a mixin: ``client``,
    ``ttl_s``, ``scripts``, ``held``: the leases this process holds, (job, unit) -> token)."""

    client: redis.Redis
    ttl_s: int
    scripts: Scripts
    held: dict[tuple[str, int], tuple[str, int]]

    if TYPE_CHECKING:  # the reads' method this part calls (JobStore has them all)

        def unit_plan(self, job_id: str) -> list[list[str]] | None: ...

    def acquire_unit(
        self, job_id: str, unit: int, owner: str, *, lease_s: float, max_lost: int, dead_token: str = ""
    ) -> LeaseGrant:
        """Take a unit's lease for ``lease_s`` (see :class:`LeaseGrant`). ``dead_token``: the token
        of a holder the caller knows is dead (a pool process of its own host), taken over at once."""
        token = secrets.token_hex(16)
        lease_ms = int(lease_s * 1000)
        args: list[str | int] = [unit, token, owner, lease_ms, max_lost, dead_token, self.ttl_s]
        reply = self.scripts.lease_acquire(keys=[JobKeys(job_id).hash], args=args)
        outcome, *detail = (text(part) for part in reply)
        if outcome == "ok":  # {'ok', runs, lost}: see scripts/lease_acquire.lua
            runs, lost = detail
            self.held[(job_id, unit)] = (token, lease_ms)
            return LeaseGrant("ok", token, runs=int(runs), lost=int(lost))
        if outcome == "held":  # {'held', owner, token}
            holder, holder_token = detail
            return LeaseGrant("held", holder=holder, holder_token=holder_token)
        if outcome == "lost":  # {'lost', lost}
            (lost,) = detail
            return LeaseGrant("lost", lost=int(lost))
        return LeaseGrant(outcome)  # {'gone'} or {'done'}

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
        listed = cast(list[tuple[bytes, float]], self.client.zrange(LIVE_KEY, 0, -1, withscores=True))
        return [(text(member), int(score)) for member, score in listed]

    def forget_live(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self.client.zrem(LIVE_KEY, *ids)

    def unit_users(self, job_id: str, unit: int) -> list[str] | None:
        """The users of one unit, as the job's plan recorded them (``None`` if it has no such unit)."""
        plan = self.unit_plan(job_id)
        return plan[unit] if plan is not None and 0 <= unit < len(plan) else None

    def unit_table(self, job_id: str) -> UnitTable:
        """The computation's status and its planned units (done, leased or waiting), read at once."""
        k = JobKeys(job_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hmget(k.hash, "status", "units_total", "units")
            pipe.hkeys(k.done)
            pipe.hgetall(k.leases)
            pipe.time()
            (status, total, plan), done_raw, leases_raw, (secs, micros) = pipe.execute()
        done = {int(u) for u in done_raw}
        leases = {int(u): orjson.loads(raw) for u, raw in leases_raw.items()}
        # a started job's plan is recorded with it (Lifecycle.start); without one, none is known
        planned = range(int(total)) if plan and total else range(0)
        return UnitTable(
            JobStatus(text(status)) if status is not None else None,
            {unit: _unit_record(unit, unit in done, leases.get(unit)) for unit in planned},
            int(secs) * 1000 + int(micros) // 1000,
        )

    def server_ms(self) -> int:
        secs, micros = self.client.time()
        return int(secs) * 1000 + int(micros) // 1000


def _unit_record(index: int, done: bool, lease: dict[str, Any] | None) -> UnitRecord:
    """A unit as stored: ``lease`` is its JSON lease (``token``, ``owner``, ``exp``, ``runs``,
    ``lost``; ``token`` empty once handed back), ``None`` before any worker took it."""
    if lease is None:
        return UnitRecord(index, UnitState.DONE if done else UnitState.DISPATCHED)
    state = UnitState.DONE if done else UnitState.RUNNING if lease["token"] else UnitState.DISPATCHED
    return UnitRecord(
        index,
        state,
        owner=str(lease["owner"]),
        token=str(lease["token"]),
        attempt=int(lease["runs"]),
        lost=int(lease["lost"]),
        lease_deadline_ms=int(lease["exp"]),
    )
