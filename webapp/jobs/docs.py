"""OpenAPI documentation shared by the jobs views: problem answers and documented headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_smorest import Blueprint

from ..errors import PROBLEM, ProblemSchema

RETRY_AFTER = {"description": "Seconds to wait before polling again", "schema": {"type": "integer"}}
LINK = {
    "description": '`</jobs...?cursor=...>; rel="next"` (RFC 8288) when there is a next page, in every format',
    "schema": {"type": "string"},
}
PREFERENCE_APPLIED = {"description": "`wait=N` when `Prefer: wait=N` was honoured", "schema": {"type": "string"}}
_PROBLEMS = {
    400: "Not valid HTTP (a control character in a header, a malformed request line or chunk) or malformed JSON",
    401: "No valid API key (`WWW-Authenticate: Bearer`)",
    404: "Malformed, never issued, expired, deleted, or another key's job",
    409: "Conflict (see `detail`)",
    413: "Body over 1 MiB",
    415: "Not application/json",
    422: "Invalid request (field messages in `errors`)",
    429: "Rate limit or concurrent-jobs cap reached, or too many wrong keys from this address (`Retry-After`)",
    503: "The task queue or the job store is unreachable (`Retry-After`)",
}


def problems(blp: Blueprint, *codes: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Document problem+json answers (RFC 9457) for an operation of ``blp``: the codes given, and
    400 and 503, which any request may get (the HTTP server's own refusals, an unreachable store)."""
    codes = tuple(sorted({400, 503, *codes}))

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        for code in reversed(codes):
            headers = {"Retry-After": RETRY_AFTER} if code in (409, 429, 503) else None
            if code == 401:
                headers = {
                    "WWW-Authenticate": {"description": '`Bearer realm="sessionizer"`', "schema": {"type": "string"}}
                }
            view = blp.alt_response(
                code, schema=ProblemSchema, description=_PROBLEMS[code], content_type=PROBLEM, headers=headers
            )(view)
        # a key is needed where the deployment requires one (AUTH_REQUIRED), optional elsewhere
        documented: Callable[..., Any] = blp.doc(security=[{"bearerAuth": []}, {}])(view)
        return documented

    return decorate
