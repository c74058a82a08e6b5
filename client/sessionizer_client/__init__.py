"""Python client of the Sessionizer job API: submit, wait (with progress), read sessions.

from sessionizer_client import Client
job = Client("http://127.0.0.1:8000").submit(["romain"], "2022-09-05", "2022-09-12").wait(progress=True)
df = job.to_pandas()
"""

__version__ = "0.1.0"

from ._async import AsyncClient, AsyncJob
from ._retry import RetryPolicy
from ._sync import Client, Job
from .errors import (
    APIError,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    JobCancelled,
    JobError,
    JobFailed,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    SessionizerError,
    Unauthorized,
    WaitTimeout,
)
from .models import JobFailure, JobLinks, JobRecord, JobRequest, JobState, Progress, Session
from .webhooks import InvalidSignature, verify_webhook

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncJob",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "InvalidRequest",
    "Job",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobFailure",
    "JobLinks",
    "JobRecord",
    "JobRequest",
    "JobState",
    "NotFound",
    "Progress",
    "RateLimited",
    "RetryPolicy",
    "ServiceUnavailable",
    "Session",
    "SessionizerError",
    "Unauthorized",
    "WaitTimeout",
    "InvalidSignature",
    "verify_webhook",
]
