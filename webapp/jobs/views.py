"""The jobs resource: submit, poll, read sessions, cancel."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson
from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from ..extensions import services
from .schemas import JobArgsSchema, JobSchema, ProblemSchema, SessionsSchema

blp = Blueprint("jobs", __name__, url_prefix="/jobs", description="Sessionization jobs: submit, then poll.")

ACTIVE = ("queued", "running")


def require_json(view: Callable[..., Any]) -> Callable[..., Any]:
    """415 for a body that is not JSON, before anything tries to parse it."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not request.is_json:
            abort(415, message=f"Send the job as application/json (got {request.mimetype or 'no content type'}).")
        return view(*args, **kwargs)

    return wrapper


def deadline_s(job: dict[str, Any]) -> float:
    """How long a job may run before it is failed: generous, and longer for bigger requests."""
    from datetime import datetime

    days = (datetime.fromisoformat(job["end"]) - datetime.fromisoformat(job["start"])).total_seconds() / 86400
    return min(86_400.0, 900.0 + 5.0 * len(job["users"]) * max(days, 1.0))


def job_body(job: dict[str, Any]) -> dict[str, Any]:
    base = f"/jobs/{job['id']}"
    return {**job, "links": {"self": base, "sessions": f"{base}/sessions", "cancel": f"{base}/cancel"}}


def polling_headers(job: dict[str, Any]) -> dict[str, str]:
    if job["status"] in ACTIVE:
        return {"Retry-After": str(current_app.config["RETRY_AFTER_S"])}
    return {}


def get_job_or_404(job_id: str) -> dict[str, Any]:
    job = services().store.get(job_id)
    if job is None:
        abort(404, message=f"No job {job_id}: it was never issued, or it has expired.")
    return job


@blp.route("")
class Jobs(MethodView):
    @require_json
    @blp.arguments(JobArgsSchema)
    @blp.response(202, JobSchema, headers={
        "Location": {"description": "The job's URL, to poll", "schema": {"type": "string"}},
        "Retry-After": {"description": "Seconds to wait before polling", "schema": {"type": "integer"}},
    })
    @blp.alt_response(400, schema=ProblemSchema, description="Malformed JSON")
    @blp.alt_response(413, schema=ProblemSchema, description="Body over 1 MiB")
    @blp.alt_response(415, schema=ProblemSchema, description="Not application/json")
    @blp.alt_response(422, schema=ProblemSchema, description="Invalid job (field messages in `errors`)")
    def post(self, job_request: dict[str, Any]) -> Any:
        """Submit a sessionization job"""
        svc = services()
        job = svc.store.create(job_request, deadline_s=deadline_s(job_request))
        try:
            svc.celery.send_task("sessionizer.plan", args=(job["id"],))
        except Exception as exc:  # the broker is down: say so, and leave no orphan job behind
            svc.store.fail(job["id"], "enqueue_failed", "the task queue could not be reached")
            abort(503, message=f"The task queue is unavailable ({type(exc).__name__}); retry later.",
                  headers={"Retry-After": "5"})
        headers = {"Location": f"/jobs/{job['id']}", **polling_headers(job)}
        return job_body(job), 202, headers


@blp.route("/<string:job_id>")
class JobsById(MethodView):
    @blp.response(200, JobSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="Never issued, or expired")
    def get(self, job_id: str) -> Any:
        """Get a job's state and progress"""
        job = get_job_or_404(job_id)
        return job_body(job), 200, polling_headers(job)


@blp.route("/<string:job_id>/cancel")
class JobCancel(MethodView):
    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="Never issued, or expired")
    def post(self, job_id: str) -> Any:
        """Cancel a job: queued units are skipped, running ones stop at their next page"""
        store = services().store
        get_job_or_404(job_id)
        store.cancel(job_id)  # a finished job stays as it is
        return job_body(get_job_or_404(job_id)), 202


@blp.route("/<string:job_id>/sessions")
class JobSessions(MethodView):
    @blp.response(200, SessionsSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="Never issued, or expired")
    @blp.alt_response(409, schema=ProblemSchema, description="Not finished, failed, or cancelled")
    def get(self, job_id: str) -> Any:
        """Get the sessions of a succeeded job, sorted by (user, start)"""
        store = services().store
        job = get_job_or_404(job_id)
        if job["status"] in ACTIVE:
            abort(409, message=f"Job {job_id} is {job['status']}; poll /jobs/{job_id} until it has finished.",
                  headers=polling_headers(job), job_status=job["status"])
        if job["status"] != "succeeded":
            error = job["error"] or {}
            abort(409, message=f"Job {job_id} {job['status']}: {error.get('message', 'no reason recorded')}",
                  job_status=job["status"], error=error)
        body = {"job_id": job_id, "sessions": store.sessions(job_id), "stats": job["stats"] or {}}
        # Sessions are stored already shaped; serialise them directly rather than field by field.
        return Response(orjson.dumps(body), mimetype="application/json")
