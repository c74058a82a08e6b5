"""A job's status, as the job store keeps it and the API shows it."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """``queued -> running -> succeeded | failed | cancelled``.

    A ``StrEnum``: members compare equal to the strings stored in Redis and sent in JSON.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in ACTIVE


ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
