"""A job's completion push: its attempts, and sending it again (routes of the jobs blueprint)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields

from sessionizer.jobstore import JobRecord
from sessionizer.jobstore.deliveries import Deliveries
from sessionizer.jobstore.keys import JobKeys
from sessionizer.jobstore.replies import text

from ..extensions import services
from .answers import get_job_or_404, json_response, no_query
from .views import blp, job_action, problems


class AttemptSchema(Schema):
    at = fields.String(metadata={"format": "date-time"})
    status_code = fields.Integer(
        allow_none=True, metadata={"description": "The receiver's HTTP status; null when no answer came (see `error`)."}
    )
    error = fields.String(
        allow_none=True,
        metadata={"description": "Why no answer came: refused by the guard, timed out, connection failed."},
    )
    next_try = fields.String(
        allow_none=True,
        metadata={
            "format": "date-time",
            "description": "When the next attempt was scheduled; null after the last one.",
        },
    )


class DeliveriesSchema(Schema):
    """A job's completion push (README: "Completion push")."""

    callback_url = fields.String(allow_none=True)
    type = fields.String(
        allow_none=True,
        metadata={"description": "`job.succeeded`, `job.failed` or `job.cancelled`; null until the job has ended."},
    )
    webhook_id = fields.String(allow_none=True, metadata={"description": "The `webhook-id` of every attempt."})
    state = fields.String(
        metadata={
            "description": (
                "`none` (no callback_url), `waiting` (the job has not ended), `pending` (an attempt is due at "
                "`next_try`), `delivered` (a 2xx), `stopped` (a 410), `failed` (the retry schedule is spent)"
            )
        }
    )
    next_try = fields.String(allow_none=True, metadata={"format": "date-time"})
    attempts = fields.List(fields.Nested(AttemptSchema), metadata={"description": "Oldest first (the last 100)."})


def deliveries() -> Deliveries:
    store = services().store
    return Deliveries(store.client, store.ttl_s, store.scripts)


def deliveries_body(job: JobRecord) -> dict[str, Any]:
    found = deliveries().read(job.id)
    if found is not None:
        return {
            "callback_url": found.url,
            "type": found.type,
            "webhook_id": found.msg_id,
            "state": found.state,
            "next_try": found.next_try,
            "attempts": found.attempts,
        }
    stored = services().store.client.hget(JobKeys(job.id).hash, "callback_url")
    url = text(stored) if stored else None
    return {
        "callback_url": url,
        "type": None,
        "webhook_id": None,
        "next_try": None,
        "attempts": [],
        "state": "none" if not url else "waiting",
    }


@blp.route("/<job_id:job_id>/deliveries")
class JobDeliveries(MethodView):
    @blp.response(200, DeliveriesSchema)
    @problems(401, 404, 422, 429)
    @no_query
    def get(self, job_id: str) -> Any:
        """List the attempts of a job's completion push"""
        return json_response(deliveries_body(get_job_or_404(job_id)))


@blp.route("/<job_id:job_id>/deliveries/redeliver")
class JobRedeliver(MethodView):
    @job_action(DeliveriesSchema)
    def post(self, job_id: str) -> Any:
        """Send a job's completion push again, now, with a fresh retry schedule"""
        job = get_job_or_404(job_id)
        if job.active:
            abort(409, message=f"Job {job_id} is {job.status}: its final event is pushed when it ends.")
        if not deliveries().redeliver(job_id):
            abort(409, message=f"Job {job_id} was submitted without a callback_url: there is nothing to push.")
        return json_response(deliveries_body(job), 202)
