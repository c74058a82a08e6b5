"""Python client of the Sessionizer job API: submit, wait (with progress), read sessions.

    from sessionizer_client import Client
    job = Client("http://127.0.0.1:8000").submit(["romain"], "2022-09-05", "2022-09-12").wait(progress=True)
    df = job.to_pandas()
"""

__version__ = "0.1.0"

from ._async import AsyncClient, AsyncJob  # noqa: E402
from ._retry import RetryPolicy  # noqa: E402
from ._sync import Client, Job  # noqa: E402
from .errors import (  # noqa: E402
    APIError, Conflict, ConnectionFailed, InvalidRequest, JobCancelled, JobError, JobFailed, NotFound,
    RateLimited, ServiceUnavailable, SessionizerError, Unauthorized, WaitTimeout,
)
from .models import JobState, Progress, Session  # noqa: E402
from .webhooks import InvalidSignature, verify_webhook  # noqa: E402

__all__ = [
    "APIError", "AsyncClient", "AsyncJob", "Client", "Conflict", "ConnectionFailed", "InvalidRequest", "Job",
    "JobCancelled", "JobError", "JobFailed", "JobState", "NotFound", "Progress", "RateLimited", "RetryPolicy",
    "ServiceUnavailable", "Session", "SessionizerError", "Unauthorized", "WaitTimeout",
    "InvalidSignature", "verify_webhook",
]
