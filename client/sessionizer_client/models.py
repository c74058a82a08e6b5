"""Plain data shared by the sync and async clients: sessions, progress, request bodies, wait steps."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from .errors import JobCancelled, JobFailed

DEFAULT_URL = "http://127.0.0.1:8000"
ACTIVE = ("queued", "running")
NDJSON, CSV = "application/x-ndjson", "text/csv"
MAX_WAIT_S = 60  # the service caps `Prefer: wait` at its MAX_WAIT_S (60 by default) anyway
PROGRESS_WAIT_S = 1  # long polls while a progress bar is shown: short, so the bar moves


class JobLike(Protocol):
    id: str
    status: str
    error: dict[str, Any] | None


@dataclass(frozen=True)
class Progress:
    users_total: int = 0
    users_done: int = 0
    events_scanned: int = 0
    events_from_source: int = 0  # of those, read from the source itself (the rest from the event store)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Progress:
        data = data or {}
        return cls(
            int(data.get("users_total", 0)),
            int(data.get("users_done", 0)),
            int(data.get("events_scanned", 0)),
            int(data.get("events_from_source", 0)),
        )


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Session:
    """One interaction session. Fields the service adds later land in ``extra``, never an error."""

    user: str
    instance: str
    start: datetime
    end: datetime
    duration_s: float
    events: int
    entry_screen: str
    exit_screen: str
    truncated_start: bool = False
    truncated_end: bool = False
    split_reason: str | None = None
    session_id: str | None = None  # None (and the three below) from a service that predates them
    screens: int | None = None
    engaged: bool | None = None
    active_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Session:
        known = {k: row[k] for k in SESSION_FIELDS if k in row}
        known["start"], known["end"] = _utc(row["start"]), _utc(row["end"])
        return cls(**known, extra={k: v for k, v in row.items() if k not in SESSION_FIELDS})


SESSION_FIELDS = tuple(f.name for f in fields(Session) if f.name != "extra")


def resolve(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The service URL and key: the arguments, else ``SESSIONIZER_URL`` / ``SESSIONIZER_API_KEY``."""
    url = url or os.environ.get("SESSIONIZER_URL") or DEFAULT_URL
    return url.rstrip("/"), api_key or os.environ.get("SESSIONIZER_API_KEY") or None


def _iso(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def submit_body(
    users: Iterable[str] | str,
    start: datetime | str,
    end: datetime | str,
    method: str | None,
    params: Mapping[str, Any] | None,
    group_by: Iterable[str] | None,
) -> dict[str, Any]:
    """The ``POST /jobs`` body; unset options are left to the service's defaults."""
    body: dict[str, Any] = {
        "users": [users] if isinstance(users, str) else list(users),
        "start": _iso(start),
        "end": _iso(end),
    }
    if method is not None:
        body["method"] = method
    if params:
        body["params"] = dict(params)
    if group_by is not None:
        body["group_by"] = list(group_by)
    return body


def next_wait(remaining: float | None, progress: bool) -> int:
    """Seconds to ask with ``Prefer: wait`` for the next long poll (whole seconds, at least 1)."""
    cap = PROGRESS_WAIT_S if progress else MAX_WAIT_S
    return cap if remaining is None else max(1, min(cap, math.ceil(remaining)))


def poll_pause(retry_after: float | None, poll_interval: float | None, remaining: float | None) -> float:
    """Seconds to sleep before a plain poll: the caller's interval, else the service's ``Retry-After``."""
    pause = poll_interval or retry_after or 1.0
    return pause if remaining is None else max(0.0, min(pause, remaining))


def check_outcome(job: JobLike) -> None:
    """Raise ``JobFailed`` / ``JobCancelled`` for a job that ended without sessions."""
    if job.status == "failed":
        raise JobFailed(job)
    if job.status == "cancelled":
        raise JobCancelled(job)


class JobState:
    """What the service last said of a job (``data`` is its JSON body)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.retry_after: float | None = None
        self.wait_applied = False  # did the last answer say `Preference-Applied: wait=N`?

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE

    @property
    def progress(self) -> Progress:
        return Progress.from_json(self.data.get("progress"))

    @property
    def error(self) -> dict[str, Any] | None:
        return self.data.get("error")

    @property
    def request(self) -> dict[str, Any]:
        return dict(self.data.get("request") or {})

    def continuation_token(self) -> str:
        """What another process needs to resume this job: ``client.job(token)``."""
        return self.id

    def __repr__(self) -> str:
        p = self.progress
        return f"<{type(self).__name__} {self.id} {self.status} users {p.users_done}/{p.users_total}>"


class atomic_file:
    """Write to ``path + '.part'``, renamed to ``path`` only once complete (no half file on error)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.part = self.path + ".part"

    def __enter__(self) -> Any:
        self.fh = open(self.part, "wb")
        return self.fh

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.fh.close()
        if exc_type is None:
            os.replace(self.part, self.path)
        else:
            os.unlink(self.part)
