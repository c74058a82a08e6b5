"""Reading jobs: the computation as the worker sees it (``get``, ``status``), the job as its client
sees it (``view``), its sessions, and an owner's listing. Reads never write: a job past its
deadline reads as failed here, and :meth:`Lifecycle.expire_overdue` records it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

import orjson
import redis

from ..status import JobStatus
from .keys import SCANS_KEY, JobKeys, OwnerJobs, is_job_id
from .lifecycle import deadline_error, overdue, utcnow
from .records import JobError, JobPage, JobRecord, Progress
from .replies import blob, text, text_pairs
from .scripts import Scripts
from .sharing import computation_of


def _not_before(stamp: str | None, floor: str) -> str | None:
    """``stamp``, or ``floor`` when ``stamp`` is earlier (ISO times; ``None`` stays ``None``)."""
    if stamp is None or datetime.fromisoformat(stamp) >= datetime.fromisoformat(floor):
        return stamp
    return floor


class Reads:
    """The reads of :class:`~sessionizer.jobstore.JobStore` (a mixin: ``client``, ``scripts``)."""

    client: redis.Redis
    scripts: Scripts

    def status(self, job_id: str) -> str | None:
        """The computation's stored status (no deadline applied: the worker's stop signal)."""
        if not is_job_id(job_id):
            return None
        value = self.client.hget(JobKeys(job_id).hash, "status")
        return text(value) if value is not None else None

    def get(self, job_id: str) -> JobRecord | None:
        """The job's computation state, or ``None`` if it was never issued or has expired."""
        return self._read(job_id, client_view=False)

    def view(self, job_id: str) -> JobRecord | None:
        """The job as its client sees it: a shared computation's state, its own cancellation;
        ``None`` once deleted or expired."""
        return self._read(job_id, client_view=True)

    def scans_started(self) -> int:
        return int(self.client.get(SCANS_KEY) or 0)

    def _read(self, job_id: str, *, client_view: bool) -> JobRecord | None:
        if not is_job_id(job_id):
            return None
        reply = self.scripts.view(keys=[JobKeys(job_id).hash])
        if not reply:
            return None
        own_pairs, comp_pairs, users_done, scanned, from_source = reply  # scripts/view.lua
        own, comp = text_pairs(own_pairs), text_pairs(comp_pairs)
        if client_view and own.get("deleted"):
            return None
        cid = own.get("primary") or job_id
        h = comp if own.get("primary") else own
        if not h:  # the computation expired before the job following it (it should not)
            h = dict(
                own,
                status=JobStatus.FAILED,
                error=orjson.dumps(
                    {"type": "result_expired", "message": "the shared result this job followed has expired"}
                ).decode(),
            )
        late = overdue(h, utcnow())
        if late:
            h = dict(
                h,
                status=JobStatus.FAILED,
                error=orjson.dumps(deadline_error()).decode(),
                finished_at=h["deadline_at"],
            )
        status, error, finished = h["status"], h.get("error"), h.get("finished_at")
        started, deadline = h.get("started_at"), h.get("deadline_at")
        if client_view and own.get("view_status"):
            status, error, finished = own["view_status"], own.get("view_error"), own.get("view_finished_at")
        if client_view and own.get("primary"):
            # A job following a computation shows its own times: nothing earlier than its own
            # submission, its own deadline; never when another (perhaps another key's) job ran.
            started, finished = _not_before(started, own["submitted_at"]), _not_before(finished, own["submitted_at"])
            deadline = own.get("own_deadline_at") or deadline
        return JobRecord(
            id=own["id"],
            status=JobStatus(status),
            owner=own.get("owner", ""),
            request=orjson.loads(own["request"]),
            progress=Progress(
                users_total=int(own.get("users_total", 0)),
                users_done=int(users_done),
                events_scanned=int(scanned),
                events_from_source=int(from_source),
            ),
            submitted_at=own["submitted_at"],
            started_at=started,
            finished_at=finished,
            deadline_at=deadline,
            error=JobError(**orjson.loads(error)) if error else None,
            stats=orjson.loads(h["stats"]) if h.get("stats") else None,
            units_total=int(h.get("units_total", 0)),
            computation=cid,
            shared=bool(own.get("primary")),
            # when the events were read: the computation's start, unless it is another key's
            # (sharing across keys): no key learns when another one ran the same query
            computed_at=h.get("started_at") if h.get("owner", "") == own.get("owner", "") else None,
            seq=int(own.get("seq", 0)),
            overdue=late,  # shown failed, not yet recorded: see Lifecycle.expire_overdue
        )

    def unit_plan(self, job_id: str) -> list[list[str]] | None:
        """The users of each unit of a started job, by index (``None`` before it started)."""
        raw = self.client.hget(JobKeys(job_id).hash, "units")
        return orjson.loads(raw) if raw else None

    def done_units(self, job_id: str) -> set[int]:
        """Indices of the units whose result is stored."""
        return {int(k) for k in self.client.hkeys(JobKeys(job_id).done)}

    def sessions(self, job_id: str) -> list[dict[str, Any]]:
        """Every session of a finished job, in unit order (units are planned in user order)."""
        return [s for _, _, s in self.iter_sessions(job_id)]

    def iter_unit_arrays(self, job_id: str, batch: int = 8) -> Iterator[bytes]:
        """Each unit's stored sessions (a JSON array, as written), in unit order, a few units per
        round trip: the whole result is never in memory at once."""
        key = JobKeys(computation_of(self.client, job_id)).sessions
        units = sorted(int(k) for k in self.client.hkeys(key))
        for i in range(0, len(units), batch):
            for raw in self.client.hmget(key, units[i : i + batch]):
                if raw is not None:
                    yield blob(raw)

    def iter_sessions(
        self, job_id: str, unit: int = 0, offset: int = 0, batch: int = 8
    ) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """``(unit, offset, session)`` from a position on, reading the units a batch at a time."""
        key = JobKeys(computation_of(self.client, job_id)).sessions
        units = sorted(u for u in (int(k) for k in self.client.hkeys(key)) if u >= unit)
        for i in range(0, len(units), batch):
            chunk = units[i : i + batch]
            for u, raw in zip(chunk, self.client.hmget(key, chunk)):
                if raw is None:
                    continue
                rows = orjson.loads(raw)
                for k in range(offset if u == unit else 0, len(rows)):
                    yield u, k, rows[k]

    def list_jobs(
        self, owner: str, *, limit: int, before_seq: int | None = None, status: str | None = None, scan_max: int = 1000
    ) -> JobPage:
        """The owner's jobs, newest first, from ``before_seq`` down. At most ``scan_max`` ids are
        looked at per call, so a page filtered by status may hold fewer than ``limit`` jobs yet
        have a next cursor."""
        key = OwnerJobs.key(owner)
        top = f"({before_seq}" if before_seq is not None else "+inf"
        jobs: list[JobRecord] = []
        gone: list[str] = []
        next_seq: int | None = None
        scanned = 0
        while scanned < scan_max:
            ids = cast(
                list[tuple[bytes, float]],
                self.client.zrevrangebyscore(
                    key, top, "-inf", start=0, num=min(limit + 1, scan_max - scanned), withscores=True
                ),
            )
            if not ids:
                return JobPage(jobs, None, gone)
            for raw_id, score in ids:
                scanned += 1
                job_id, seq = text(raw_id), int(score)
                job = self.view(job_id)
                if job is None:
                    gone.append(job_id)
                elif status is None or job.status == status:
                    if len(jobs) == limit:
                        return JobPage(jobs, next_seq, gone)
                    jobs.append(job)
                next_seq = seq
            top = f"({next_seq}"
        return JobPage(jobs, next_seq, gone)
