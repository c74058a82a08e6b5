"""What the service answers, as typed, frozen records: a job, its request, progress and failure, a
session. Shared by the sync and async clients and the command line; read from the API's JSON
(the ``JobSchema`` and ``SessionSchema`` of its OpenAPI document) by ``from_json``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

ACTIVE = ("queued", "running")


def parse_time(value: str) -> datetime:
    """An ISO-8601 date-time of the service's, aware (one without an offset is UTC)."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _time_or_none(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


def format_time(value: datetime) -> str:
    """A date-time as the service writes it (UTC, ``Z``): ``format_time(parse_time(s)) == s``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _extra(data: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in known}


@dataclass(frozen=True)
class Progress:
    users_total: int = 0
    users_done: int = 0
    events_scanned: int = 0
    events_from_source: int = 0  # of those, read from the source itself (the rest from the event store)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Progress:
        data = data or {}
        return cls(*(int(data.get(f.name, 0)) for f in fields(cls)))


@dataclass(frozen=True)
class JobRequest:
    """What a job was asked, as the service normalised it (UTC times, the method's defaults filled in)."""

    users: tuple[str, ...]
    start: datetime
    end: datetime
    method: str
    params: Mapping[str, Any]
    group_by: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRequest:
        return cls(
            users=tuple(data["users"]),
            start=parse_time(data["start"]),
            end=parse_time(data["end"]),
            method=str(data["method"]),
            params=dict(data.get("params") or {}),
            group_by=tuple(data.get("group_by") or ("user",)),
        )


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed or was cancelled: the service's ``type`` (e.g. ``deadline_exceeded``) and words."""

    type: str
    message: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> JobFailure | None:
        if not data:
            return None
        return cls(str(data.get("type") or "unknown"), str(data.get("message") or "no reason recorded"))


@dataclass(frozen=True)
class JobLinks:
    """The job's URLs, relative to the service (``self``, ``sessions``, ``cancel``)."""

    self: str
    sessions: str
    cancel: str | None = None  # absent from a completion push

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> JobLinks | None:
        return cls(data["self"], data["sessions"], data.get("cancel")) if data else None


@dataclass(frozen=True)
class JobRecord:
    """A job as the service last described it. Fields the service adds later land in ``extra``."""

    id: str
    status: str  # queued, running, succeeded, failed or cancelled
    request: JobRequest | None
    progress: Progress
    submitted_at: datetime | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    error: JobFailure | None = None
    shared: bool = False  # it follows an earlier computation of the same request (shared results)
    computed_at: datetime | None = None  # when that computation read the events (None: another key's)
    links: JobLinks | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRecord:
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            request=JobRequest.from_json(data["request"]) if data.get("request") else None,
            progress=Progress.from_json(data.get("progress")),
            submitted_at=_time_or_none(data.get("submitted_at")),
            started_at=_time_or_none(data.get("started_at")),
            finished_at=_time_or_none(data.get("finished_at")),
            deadline_at=_time_or_none(data.get("deadline_at")),
            error=JobFailure.from_json(data.get("error")),
            shared=bool(data.get("shared", False)),
            computed_at=_time_or_none(data.get("computed_at")),
            links=JobLinks.from_json(data.get("links")),
            extra=_extra(data, JOB_FIELDS),
        )


JOB_FIELDS = tuple(f.name for f in fields(JobRecord) if f.name != "extra")


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
        known["start"], known["end"] = parse_time(row["start"]), parse_time(row["end"])
        return cls(**known, extra=_extra(row, SESSION_FIELDS))


SESSION_FIELDS = tuple(f.name for f in fields(Session) if f.name != "extra")


class JobLike(Protocol):
    """What the errors need of a job (``Job`` and ``AsyncJob`` are ones)."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def record(self) -> JobRecord: ...


class JobState:
    """What the service last said of a job: ``record``, typed, and ``data``, its JSON body as sent."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.retry_after: float | None = None
        self.wait_applied = False  # did the last answer say `Preference-Applied: wait=N`?

    @property
    def data(self) -> dict[str, Any]:
        return self._data

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        self._data = value
        self.record = JobRecord.from_json(value)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE

    @property
    def progress(self) -> Progress:
        return self.record.progress

    @property
    def error(self) -> dict[str, Any] | None:
        """The service's ``{"type", "message"}`` (``record.error``, typed), ``None`` unless it failed."""
        error = self._data.get("error")
        return dict(error) if isinstance(error, dict) else None

    @property
    def request(self) -> dict[str, Any]:
        """The request as JSON (``record.request``, typed)."""
        return dict(self._data.get("request") or {})

    def continuation_token(self) -> str:
        """What another process needs to resume this job: ``client.job(token)``."""
        return self.id

    def __repr__(self) -> str:
        p = self.progress
        return f"<{type(self).__name__} {self.id} {self.status} users {p.users_done}/{p.users_total}>"
