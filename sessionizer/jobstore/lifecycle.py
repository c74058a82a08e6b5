"""A job's lifecycle: submit, ``queued -> running -> succeeded | failed | cancelled``, units'
results, deletion. Every move is a compare-and-set (``scripts/transition.lua``), so a late unit
can never turn a failed or cancelled job into a success, and only one unit ever finalises a job.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import redis

from ..analytics import job_stats
from ..status import ACTIVE, TERMINAL, JobStatus
from . import jobstats
from .deliveries import Deliveries
from .idempotency import idem_key
from .keys import SCANS_KEY, SEQ_KEY, JobKeys, OwnerActive, OwnerJobs, ShareKey
from .records import JobRecord
from .replies import blob, text
from .scripts import Scripts
from .sharing import computation_of, fingerprint


class LeaseLost(Exception):
    """A unit's result came from a worker that no longer holds the unit's lease: nothing was stored."""


class TooManyActiveJobs(Exception):
    """The owner already has as many queued or running jobs as allowed."""

    def __init__(self, active: int) -> None:
        super().__init__(f"{active} jobs already queued or running")
        self.active = active


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def overdue(h: Mapping[str, str], now: datetime) -> bool:
    """An active computation past its deadline (it is failed by :meth:`Lifecycle.expire_overdue`)."""
    return h.get("status") in ACTIVE and bool(h.get("deadline_at")) and now > datetime.fromisoformat(h["deadline_at"])


def deadline_error() -> dict[str, str]:
    # no time in the message: a job following this computation (perhaps another key's) must
    # not learn when that computation was submitted
    return {"type": "deadline_exceeded", "message": "the job did not finish before its deadline"}


class Lifecycle:
    """The writes of :class:`~sessionizer.jobstore.JobStore` (a mixin: ``client``, ``ttl_s``,
    ``scripts``)."""

    client: redis.Redis
    ttl_s: int
    scripts: Scripts
    held: dict[tuple[str, int], tuple[str, int]]  # the units' leases this process holds (leases.py)

    if TYPE_CHECKING:  # the other parts' methods this one calls (JobStore has them all)

        def view(self, job_id: str) -> JobRecord | None: ...

        def register_live(self, job_id: str) -> None: ...

    @property
    def list_ttl_s(self) -> int:
        # a job's keys can outlive their creation by the ttl after its last write (its deadline)
        return 2 * self.ttl_s

    def create(self, request: Mapping[str, Any], *, deadline_s: float, owner: str = "") -> JobRecord:
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
        across_keys: bool = False,
        source: str = "",
        fresh: bool = False,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        max_active: int = 0,
        callback_url: str = "",
    ) -> tuple[JobRecord, bool]:
        """Record a new job; return it as its client sees it, and whether it needs planning.

        Raises :class:`TooManyActiveJobs` when ``max_active`` (> 0) of the owner's jobs are
        already queued or running: the check and the creation are one atomic step.

        With ``share``, a computation of the same fingerprint (the request and its ``source``'s
        identity) that is queued, running or succeeded is followed instead of planned again
        (unless ``fresh``); a new computation becomes the one later identical requests follow.
        Only the owner's own computations are followed, unless ``across_keys``
        (``SHARE_RESULTS_ACROSS_KEYS``).
        """
        job_id = job_id or str(uuid.uuid4())
        now = utcnow()
        fp = fingerprint(request, source, scope=None if across_keys else owner)
        deadline = now + timedelta(seconds=deadline_s)
        fields: dict[str, Any] = {
            "id": job_id,
            "status": JobStatus.QUEUED,
            "owner": owner,
            "request": orjson.dumps(request),
            "submitted_at": iso(now),
            "deadline_at": iso(deadline),
            "deadline_ms": int(deadline.timestamp() * 1000),
            "own_deadline_at": iso(deadline),  # shown to its client if it follows another computation
            "users_total": len(request.get("users", ())),
            "units_total": 0,
            "fingerprint": fp,
            "idem": idem_key(owner, idempotency_key) if idempotency_key else "",
            "callback_url": callback_url,  # its completion push (sessionizer/webhooks/)
        }
        flat = [item for pair in fields.items() for item in pair]
        keys = [
            JobKeys(job_id).hash,
            ShareKey.key(fp) if share else "",
            OwnerJobs.key(owner),
            OwnerActive.key(owner),
            SEQ_KEY,
        ]
        args = [
            job_id,
            self.ttl_s,
            self.list_ttl_s,
            "1" if fresh else "0",
            int(now.timestamp() * 1000),
            max_active,
            *flat,
        ]
        outcome, detail = self.scripts.submit(keys=keys, args=args)
        if outcome == b"capped":
            raise TooManyActiveJobs(int(detail))
        jobstats.record_submitted(self.client, shared=bool(detail))
        if detail and callback_url:  # it follows a computation that may have ended already
            Deliveries(self.client, self.ttl_s, self.scripts).on_final(job_id, fan_out=False)
        if not detail:
            self.register_live(job_id)
        job = self.view(job_id)
        if job is None:  # it expired or was deleted in between: only a ttl of seconds would do that
            raise LookupError(f"job {job_id} is gone as soon as it was submitted")
        return job, not detail

    def _touch(self, job_id: str, pipe: Any = None) -> None:
        run = pipe if pipe is not None else self.client.pipeline(transaction=False)
        for key in JobKeys(job_id).family():
            run.expire(key, self.ttl_s)
        if pipe is None:
            run.execute()

    def _move(
        self, job_id: str, to: JobStatus, allowed_from: frozenset[JobStatus] | tuple[JobStatus, ...], **fields: Any
    ) -> bool:
        args: list[Any] = [to, ",".join(allowed_from)]
        for name, value in fields.items():
            args += [name, value]
        moved = int(self.scripts.transition(keys=[JobKeys(job_id).hash], args=args)) == 1
        if moved:
            self._touch(job_id)
            if to in TERMINAL:
                self._count_final(job_id, to)
                Deliveries(self.client, self.ttl_s, self.scripts).on_final(job_id, fan_out=True)  # the jobs' pushes
        return moved

    def _count_final(self, job_id: str, status: JobStatus) -> None:
        """Count a job reaching a final status, and its time since submission (``jobstats``)."""
        submitted = self.client.hget(JobKeys(job_id).hash, "submitted_at")
        seconds = (utcnow() - datetime.fromisoformat(text(submitted))).total_seconds() if submitted else 0.0
        jobstats.record_finished(self.client, status, seconds)

    def start(self, job_id: str, units_total: int, units: list[list[str]] | None = None) -> bool:
        """``queued -> running`` with the number of units it was split into (counts a scan), and
        the units' users: a plan sent again reads them back (:meth:`unit_plan`) rather than
        planning anew, so a unit's index always means the same users."""
        extra = {"units": orjson.dumps(units)} if units is not None else {}
        moved = self._move(
            job_id, JobStatus.RUNNING, (JobStatus.QUEUED,), started_at=iso(utcnow()), units_total=units_total, **extra
        )
        if moved:
            self.client.incr(SCANS_KEY)
            self.register_live(job_id)
        return moved

    def fail(self, job_id: str, error_type: str, message: str, *, finished_at: str | None = None) -> bool:
        """Record why a computation failed (only an active one can fail)."""
        error = orjson.dumps({"type": error_type, "message": message})
        return self._move(job_id, JobStatus.FAILED, ACTIVE, error=error, finished_at=finished_at or iso(utcnow()))

    def expire_overdue(self, job_id: str) -> bool:
        """Fail the job's computation if it is past its deadline and still active (reads show such
        a job as failed already; this step records it, so none stays ``running`` forever).
        Returns True when it failed the computation now."""
        cid = computation_of(self.client, job_id)
        raw = self.client.hmget(JobKeys(cid).hash, "status", "deadline_at")
        h = {k: text(v) for k, v in zip(("status", "deadline_at"), raw) if v is not None}
        if not overdue(h, utcnow()):
            return False
        err = deadline_error()
        return self.fail(cid, err["type"], err["message"], finished_at=h["deadline_at"])

    def cancel(self, job_id: str, reason: str = "cancelled by the client") -> bool:
        """Cancel a job; its computation stops unless another job still follows it.

        A job alone on its computation (every job, unless results are shared) is simply
        moved to ``cancelled``; a finished job stays as it is.
        """
        error = orjson.dumps({"type": "cancelled", "message": reason})
        cancelled = int(self.scripts.cancel(keys=[JobKeys(job_id).hash], args=[error, iso(utcnow())])) == 1
        if cancelled:
            self._count_final(job_id, JobStatus.CANCELLED)
            Deliveries(self.client, self.ttl_s, self.scripts).on_final(job_id, fan_out=False)
        return cancelled

    # A unit may still be running when its job is deleted: its writes check, in the same script,
    # that the job is still there, so a deleted job gets no key back.
    def record_progress(self, job_id: str, unit: int, scanned: int, from_source: int | None = None) -> None:
        """A unit's counts so far: documents used, and of those read from the source itself
        (``None``: all of them); nothing once the job is gone. Progress also renews the unit's
        lease when this process holds it (``held``, jobstore/leases.py)."""
        k = JobKeys(job_id)
        src = scanned if from_source is None else from_source
        token, lease_ms = self.held.get((job_id, unit), ("", 0))
        self.scripts.unit_progress(keys=[k.hash, k.scanned], args=[self.ttl_s, unit, scanned, src, token, lease_ms])

    def complete_unit(
        self,
        job_id: str,
        unit: int,
        users: int,
        sessions: list[dict[str, Any]],
        stats: Mapping[str, int],
        *,
        lease: str = "",
    ) -> bool:
        """Store a unit's result (idempotent) and return True when every unit is now done
        (nothing is stored once the job is gone). With ``lease`` (its token), only while that
        lease still holds the unit: :class:`LeaseLost` otherwise, and nothing is stored."""
        args: list[bytes | str | int] = [
            self.ttl_s,
            unit,
            orjson.dumps(sessions),
            orjson.dumps(dict(stats)),
            users,
            lease,
        ]
        outcome = int(self.scripts.complete_unit(keys=[JobKeys(job_id).hash], args=args))
        self.held.pop((job_id, unit), None)
        if outcome < 0:
            raise LeaseLost(f"unit {unit} of job {job_id}: its lease was taken over")
        return bool(outcome)

    def finish(self, job_id: str) -> bool:
        """``running -> succeeded`` with the summed statistics, once every unit is in."""
        totals: dict[str, int] = {}
        for raw in self.client.hvals(JobKeys(job_id).unitstats):
            for name, value in orjson.loads(raw).items():
                totals[name] = totals.get(name, 0) + int(value)
        totals.update(
            job_stats(blob(a) for a in self.client.hvals(JobKeys(job_id).sessions))
        )  # medians need every session
        return self._move(
            job_id, JobStatus.SUCCEEDED, (JobStatus.RUNNING,), stats=orjson.dumps(totals), finished_at=iso(utcnow())
        )

    def delete(self, job_id: str) -> bool:
        """Forget a job (cancel it first to stop its work); shared results stay for the others."""
        owner = self.client.hget(JobKeys(job_id).hash, "owner")
        if owner is None:
            return False
        deleted = bool(self.scripts.delete(keys=[JobKeys(job_id).hash, OwnerJobs.key(text(owner))]))
        if deleted:  # its push too: a deleted job sends nothing more
            Deliveries(self.client, self.ttl_s, self.scripts).forget(job_id)
        return deleted

    def forget_listed(self, owner: str, job_ids: list[str]) -> None:
        """Drop ids a listing met that have expired or were deleted (the listing itself only reads)."""
        if job_ids:
            self.client.zrem(OwnerJobs.key(owner), *job_ids)
