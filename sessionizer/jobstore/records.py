"""What the store's reads return: typed, frozen records rather than dicts read by position (as
rq's ``Job`` is). ``JobRecord`` is a job as :meth:`Reads.get` (the computation, for the worker) or
:meth:`Reads.view` (the job as its client sees it) read it; ``UnitRecord`` is one unit of a
computation as its plan and its lease keep it (:meth:`Leases.unit_table`).

A record is read once and not kept: the store is the truth, a record a snapshot of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..status import ACTIVE, JobStatus


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a job has come: its users, those in the units done, and the documents read."""

    users_total: int
    users_done: int
    events_scanned: int  # documents the units used
    events_from_source: int  # of those, read from the source itself (not the event store)

    def as_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed or was cancelled: a machine-readable ``type`` and a ``message``."""

    type: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job (or its computation) at the instant it was read.

    ``computation`` is the job whose work it follows (its own id unless ``shared``); ``overdue``:
    past its deadline, shown failed, not yet recorded so (:meth:`Lifecycle.expire_overdue`);
    ``computed_at`` is ``None`` when another key ran the computation (no key learns when another
    one ran the same query).
    """

    id: str
    status: JobStatus
    owner: str
    request: dict[str, Any]  # as submitted (JSON), validated by the API
    progress: Progress
    submitted_at: str
    started_at: str | None
    finished_at: str | None
    deadline_at: str | None
    error: JobError | None
    stats: dict[str, float] | None
    units_total: int
    computation: str
    shared: bool
    computed_at: str | None
    seq: int
    overdue: bool

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def as_json(self) -> dict[str, Any]:
        """Every field as plain JSON values (the API's job body picks its own from these)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["status"] = str(self.status)
        out["progress"] = self.progress.as_json()
        out["error"] = self.error.as_json() if self.error is not None else None
        return out

    def __getitem__(self, name: str) -> Any:
        """A field by name, as :meth:`as_json` shows it: the record still reads as the dict the
        store returned before it (``job["id"]``, ``job["progress"]["users_done"]``) for tests and
        scripts written against that; the product reads attributes."""
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        value = getattr(self, name)
        return value.as_json() if isinstance(value, Progress | JobError) else value


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of an owner's listing: the jobs, the cursor to go on from (``None`` at the end),
    and the listed ids found gone (expired or deleted), for :meth:`Lifecycle.forget_listed`."""

    jobs: list[JobRecord] = field(default_factory=list)
    next_seq: int | None = None
    gone: list[str] = field(default_factory=list)


class UnitState(StrEnum):
    """A planned unit, as the store keeps it: ``dispatched`` (sent, no lease held: never taken,
    handed back at a clean stop, or its holders all lost), ``running`` (a lease holds it, perhaps
    lapsed: see :meth:`UnitRecord.live`), ``done`` (its result is stored)."""

    DISPATCHED = "dispatched"
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class UnitRecord:
    """One unit of a computation: its state, and its lease as stored (``sz:job:{id}:leases``).

    ``token`` is the lease's fence (empty unless ``running``); ``attempt`` counts the runs that took
    the lease, ``lost`` the holders that stopped renewing it (died, hung, cut off);
    ``lease_deadline_ms`` is when the lease lapses, epoch ms on Redis' clock.
    """

    index: int
    state: UnitState
    owner: str = ""
    token: str = ""
    attempt: int = 0
    lost: int = 0
    lease_deadline_ms: int = 0

    def live(self, now_ms: int) -> bool:
        """Held by a lease that has not lapsed at ``now_ms`` (Redis' clock)."""
        return self.state == UnitState.RUNNING and self.lease_deadline_ms > now_ms

    def lapsed(self, now_ms: int) -> bool:
        """Held by a lease whose holder stopped renewing it."""
        return self.state == UnitState.RUNNING and self.lease_deadline_ms <= now_ms


@dataclass(frozen=True, slots=True)
class UnitTable:
    """One computation's planned units at one instant (read in one transaction); ``now_ms`` is that
    instant on Redis' clock. ``units`` is empty until the computation's plan is recorded."""

    status: JobStatus | None
    units: dict[int, UnitRecord] = field(default_factory=dict)
    now_ms: int = 0

    def pending(self) -> list[UnitRecord]:
        """The units not done, in index order."""
        return [u for _, u in sorted(self.units.items()) if u.state != UnitState.DONE]
