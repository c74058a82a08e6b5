"""Admission of a jobs request, in one Redis round trip (``sessionizer.jobstore.rate_limit``,
shared by every API process): the client address's failed authentications, then the key's rate."""

from __future__ import annotations

import math

from flask import request
from flask_smorest import abort

from sessionizer.jobstore import JobStore

from .auth import deny
from .extensions import settings


def admit(store: JobStore, owner: str | None, why: str) -> str:
    """The caller's owner, or an abort: 429 once the client address has sent
    ``AUTH_FAILURES_BURST`` wrong keys faster than ``AUTH_FAILURES_PER_S`` (any key is then
    refused before it is judged, so guessing gains nothing), 401 for a wrong key (``owner`` None,
    counted), 429 once the key has spent its burst faster than its rate."""
    cfg = settings()
    verdict, wait = store.rate_limit.admit(
        request.remote_addr or "-",
        owner,
        failures_per_s=cfg.auth.failures_per_s,
        failures_burst=cfg.auth.failures_burst,
        rate_per_s=cfg.limits.rate_per_s,
        burst=cfg.limits.rate_burst,
    )
    retry = {"Retry-After": str(max(1, math.ceil(wait)))}
    if verdict == "blocked":
        abort(429, message="Too many failed authentications from this address; retry later.", headers=retry)
    if verdict == "denied" or owner is None:
        deny(why)
    if verdict == "rate":
        abort(
            429,
            message=f"Too many requests for this API key: at most {cfg.limits.rate_per_s:g} per second "
            f"(bursts of {cfg.limits.rate_burst}).",
            headers=retry,
        )
    return owner
