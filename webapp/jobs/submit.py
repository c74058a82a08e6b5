"""Submitting a job, without HTTP: idempotency, shared results, the active-jobs cap, enqueueing
the plan, and the rollback when something fails. The view maps the refusals to answers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from celery import Celery

from sessionizer import tasks
from sessionizer.datasource import settled, source_identity
from sessionizer.jobstore import JobRecord, JobStore, TooManyActiveJobs
from sessionizer.settings import Settings
from sessionizer.webhooks.signing import secret_for


class SubmitRefused(Exception):
    """A submit that gets no job: the HTTP status, what to say, and the headers to send."""

    status = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message, self.headers, self.extra = message, headers or {}, extra


class IdempotencyMismatch(SubmitRefused):
    status = 422


class IdempotencyPending(SubmitRefused):
    status = 409


class ActiveJobsCapped(SubmitRefused):
    status = 429


class QueueUnavailable(SubmitRefused):
    status = 503


@dataclass
class Submitted:
    job: JobRecord
    headers: dict[str, str] = field(default_factory=dict)  # ``Idempotent-Replayed`` on a replay


def request_digest(job_request: dict[str, Any]) -> str:
    """What an ``Idempotency-Key`` is bound to: the normalised request."""
    return hashlib.sha256(orjson.dumps(job_request, option=orjson.OPT_SORT_KEYS)).hexdigest()


def shareable(settings: Settings, job_request: dict[str, Any], cache_control: str | None) -> tuple[str | None, bool]:
    """(the identity of the data the job reads when its result may be shared, else ``None``; must
    run afresh). Only a job on identified data (``sessionizer/datasource.py``) whose reads have
    all settled (``SHARE_SETTLE_S``) is shared; ``Cache-Control: no-cache`` asks for a fresh run."""
    fresh = "no-cache" in {d.strip().split("=")[0].lower() for d in (cache_control or "").split(",")}
    if not settings.results.share or not settled(job_request, settings.results.settle_s):
        return None, fresh
    return source_identity(settings), fresh


class NoWebhookSecret(SubmitRefused):
    status = 422


def without_callback(settings: Settings, owner: str, job_request: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The request as the computation sees it, and the job's ``callback_url`` (pushes are the
    job's: two jobs sharing a computation may each have their own); refused when no secret would
    sign the pushes."""
    url = job_request.get("callback_url") or ""
    if url and not push_secret(settings, owner):
        raise NoWebhookSecret(
            "No webhook secret is configured for this API key, so its pushes could not be signed.",
            errors={
                "callback_url": [
                    "No webhook secret is configured for this API key "
                    "(WEBHOOK_SECRETS, or WEBHOOK_SECRET without keys)."
                ]
            },
        )
    return {k: v for k, v in job_request.items() if k != "callback_url"}, url


def push_secret(settings: Settings, owner: str) -> str | None:
    hooks = settings.webhooks
    return secret_for(
        owner, hooks.secret.value if hooks.secret else None, hooks.secrets.value if hooks.secrets else None
    )


@dataclass
class JobSubmitter:
    """Submits an owner's jobs through one store and one Celery sender."""

    store: JobStore
    celery: Celery
    settings: Settings

    def submit(
        self,
        owner: str,
        job_request: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        cache_control: str | None = None,
    ) -> Submitted:
        """Create (or replay) the job; raises a :class:`SubmitRefused` when there is none to give."""
        if not idempotency_key:
            return Submitted(self._create(owner, job_request, None, cache_control))
        digest = request_digest(job_request)
        state, prior = self.store.idempotency.reserve(owner, idempotency_key, digest)
        if state == "mismatch":
            raise IdempotencyMismatch(
                "This Idempotency-Key was used with a different request body.",
                errors={"Idempotency-Key": ["Already used with a different request body."]},
            )
        if state == "pending":
            raise IdempotencyPending(
                "A request with this Idempotency-Key is still being processed; retry shortly.", {"Retry-After": "1"}
            )
        if state == "replay" and prior:
            job = self.store.view(prior)
            if job is not None and job.owner == owner:
                return Submitted(job, {"Idempotent-Replayed": "true"})
        try:
            job = self._create(owner, job_request, idempotency_key, cache_control)
        except BaseException:  # a failed submit frees its key, so it can be retried
            self.store.idempotency.release(owner, idempotency_key)
            raise
        self.store.idempotency.commit(owner, idempotency_key, digest, job.id)
        return Submitted(job)

    def _create(self, owner: str, job_request: dict[str, Any], key: str | None, cache_control: str | None) -> JobRecord:
        job_request, callback_url = without_callback(self.settings, owner, job_request)
        cap = self.settings.limits.max_active_jobs
        source, fresh = shareable(self.settings, job_request, cache_control)
        try:
            job, needs_plan = self.store.submit(
                job_request,
                deadline_s=self.settings.job_deadline_s(job_request),
                owner=owner,
                share=source is not None,
                source=source or "",
                across_keys=self.settings.results.share_across_keys,
                fresh=fresh,
                idempotency_key=key,
                max_active=cap,
                callback_url=callback_url,
            )
        except TooManyActiveJobs as exc:
            raise ActiveJobsCapped(
                f"This API key already has {exc.active} jobs queued or running "
                f"(at most {cap}); wait for one to finish.",
                {"Retry-After": str(self.settings.jobs.retry_after_s)},
            ) from exc
        if needs_plan:
            try:
                self.celery.send_task(tasks.PLAN, args=(job.id,))
            except Exception as exc:  # the broker is down: say so, and leave no orphan job behind
                self.store.fail(job.id, "enqueue_failed", "the task queue could not be reached")
                raise QueueUnavailable(
                    f"The task queue is unavailable ({type(exc).__name__}); retry later.", {"Retry-After": "5"}
                ) from exc
        return job
