"""The jobs resource: list, submit, poll (or wait), read sessions (paged, NDJSON, CSV), cancel, delete."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Response, g, request, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema

from sessionizer.jobstore import JobRecord
from sessionizer.status import JobStatus

from ..auth import identify
from ..cursors import listing_scope, seal
from ..extensions import services
from ..limits import admit
from . import docs
from .answers import get_job_or_404, job_body, json_response, no_query, polling_headers, require_json
from .prefer import waited
from .schemas import (
    PREFER,
    PREFER_MAX,
    JobArgsSchema,
    JobListQueryArgsSchema,
    JobListSchema,
    JobSchema,
    SessionsQueryArgsSchema,
    SessionsSchema,
    SubmitHeadersSchema,
)
from .sessions import SessionPage, csv_lines, json_document, json_rows_document, ndjson_lines
from .submit import JobSubmitter, SubmitRefused

blp = Blueprint("jobs", __name__, url_prefix="/jobs", description="Sessionization jobs: submit, then poll.")
problems = functools.partial(docs.problems, blp)
NDJSON, CSV = "application/x-ndjson", "text/csv"


def job_action(schema: type[Schema]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An action on a job (``POST /jobs/<id>/...``, no query): 202 with ``schema``, 409 when the
    job's state refuses it, and the other problems of a job's routes."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        return blp.response(202, schema)(problems(401, 404, 409, 422, 429)(no_query(view)))

    return decorate


@blp.before_request
def guard() -> None:
    """Every jobs request: who is calling (API key), and within their address's and key's limits?"""
    owner, why = identify()
    g.owner = admit(services().store, owner, why)


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(JobListQueryArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, JobListSchema, headers={"Link": docs.LINK})
    @problems(401, 422, 429)
    def get(self, args: dict[str, Any]) -> Any:
        """List the caller's jobs, newest first (cursor-paged)"""
        store, cursor = services().store, args.get("cursor")
        page = store.list_jobs(
            g.owner, limit=args["limit"], status=args.get("status"), before_seq=cursor[0] if cursor else None
        )
        store.forget_listed(g.owner, page.gone)
        next_cursor = seal(listing_scope(), page.next_seq) if page.next_seq else None
        return json_response(
            {"jobs": [job_body(j) for j in page.jobs], "next_cursor": next_cursor}, 200, next_link("/jobs", next_cursor)
        )

    @require_json
    @blp.arguments(SubmitHeadersSchema, location="headers")
    @blp.arguments(JobArgsSchema)
    @blp.response(
        202,
        JobSchema,
        headers={
            "Location": {"description": "The job's URL, to poll", "schema": {"type": "string"}},
            "Retry-After": docs.RETRY_AFTER,
            "Preference-Applied": docs.PREFERENCE_APPLIED,
            "Idempotent-Replayed": {
                "description": "`true` when this is the original job of a retried submit",
                "schema": {"type": "string"},
            },
        },
    )
    @problems(400, 401, 409, 413, 415, 422, 429, 503)
    @no_query
    def post(self, headers: dict[str, Any], job_request: dict[str, Any]) -> Any:
        """Submit a sessionization job"""
        svc = services()
        submitter = JobSubmitter(svc.store, svc.celery, svc.settings)
        try:
            submitted = submitter.submit(
                g.owner,
                job_request,
                idempotency_key=headers.get("idempotency_key"),
                cache_control=headers.get("cache_control"),
            )
        except SubmitRefused as refused:
            abort(refused.status, message=refused.message, headers=refused.headers, **refused.extra)
        job, applied = waited(svc.store, g.owner, submitted.job, headers.get("prefer"), svc.settings.limits)
        out = {"Location": f"/jobs/{job.id}", **polling_headers(job), **applied, **submitted.headers}
        return json_response(job_body(job), 202, out)


@blp.route("/<job_id:job_id>")
class JobsById(MethodView):
    # The poll path: its one header is read directly (documented below) rather than through a
    # webargs schema, which cost about a fifth of a poll's CPU.
    @blp.doc(
        parameters=[
            {
                "in": "header",
                "name": "Prefer",
                "required": False,
                "schema": {"type": "string", "maxLength": PREFER_MAX},
                "description": PREFER.metadata["description"],
            }
        ]
    )
    @blp.response(
        200, JobSchema, headers={"Retry-After": docs.RETRY_AFTER, "Preference-Applied": docs.PREFERENCE_APPLIED}
    )
    @problems(401, 404, 422, 429)
    @no_query
    def get(self, job_id: str) -> Any:
        """Get a job's state and progress

        `Prefer: wait=N` holds the answer until the job has finished or N seconds have passed."""
        prefer = request.headers.get("Prefer")
        if prefer is not None and len(prefer) > PREFER_MAX:
            abort(422, messages={"headers": {"Prefer": [f"Longer than maximum length {PREFER_MAX}."]}})
        job = get_job_or_404(job_id)
        svc = services()
        job, applied = waited(svc.store, g.owner, job, prefer, svc.settings.limits)
        return json_response(job_body(job), 200, {**polling_headers(job), **applied})

    @blp.response(204)
    @problems(401, 404, 422, 429)
    @no_query
    def delete(self, job_id: str) -> Any:
        """Cancel a job if it is still running, then forget it and its results (later reads: 404)"""
        get_job_or_404(job_id)
        store = services().store
        store.cancel(job_id, "deleted by the client")
        store.delete(job_id)
        answer = Response(status=204)
        del answer.headers["Content-Type"]  # no body, so no body type (Flask would say text/html)
        return answer


@blp.route("/<job_id:job_id>/cancel")
class JobCancel(MethodView):
    @job_action(JobSchema)
    def post(self, job_id: str) -> Any:
        """Cancel a job: queued units are skipped, running ones stop at their next page

        A job that has already succeeded or failed cannot be cancelled (409, naming its status);
        cancelling a cancelled job again changes nothing and answers as the first time."""
        refuse_finished(get_job_or_404(job_id))
        services().store.cancel(job_id)  # a shared computation goes on for the others
        job = get_job_or_404(job_id)
        refuse_finished(job)  # it finished in the meantime: nothing was cancelled
        return json_response(job_body(job), 202)


def refuse_finished(job: JobRecord) -> None:
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        abort(
            409,
            message=f"Job {job.id} has already {job.status}: there is nothing to cancel.",
            job_status=job.status,
        )


@blp.route("/<job_id:job_id>/sessions")
class JobSessions(MethodView):
    @blp.arguments(SessionsQueryArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, SessionsSchema, headers={"Link": docs.LINK})
    @blp.doc(
        responses={
            "200": {
                "description": "OK",
                "headers": {"Link": docs.LINK},
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Sessions"}},
                    NDJSON: {"schema": {"type": "string", "description": "One session (as `Session`) per line"}},
                    CSV: {"schema": {"type": "string", "description": "A header row, then one session per row"}},
                },
            }
        }
    )
    @problems(401, 404, 409, 422, 429)
    def get(self, args: dict[str, Any], job_id: str) -> Any:
        """Get the sessions of a succeeded job

        Sorted by (user, start); paged with `limit` and `cursor`, one user with `user`;
        `Accept: application/x-ndjson` or `text/csv` for those formats. Every format is streamed
        (no `Content-Length`) unless `limit` is given; with `limit`, every format gives the next
        page in `Link: <...>; rel="next"`."""
        job = get_job_or_404(job_id)
        if job.active:
            abort(
                409,
                message=f"Job {job_id} is {job.status}; poll /jobs/{job_id} until it has finished.",
                headers=polling_headers(job),
                job_status=job.status,
            )
        if job.status != JobStatus.SUCCEEDED:
            reason = job.error.message if job.error else "no reason recorded"
            abort(
                409,
                message=f"Job {job_id} {job.status}: {reason}",
                job_status=job.status,
                error=job.error.as_json() if job.error else {},
            )
        page = SessionPage(services().store, job_id, args.get("cursor"), args.get("limit"), args.get("user"))
        fmt = request.accept_mimetypes.best_match(["application/json", NDJSON, CSV], default="application/json")
        stats = job.stats or {}
        if page.limit is None:  # everything, streamed in every format
            if fmt == NDJSON:
                return Response(stream_with_context(ndjson_lines(page.rows())), mimetype=NDJSON)
            if fmt == CSV:
                return Response(stream_with_context(csv_lines(page.rows())), mimetype=CSV)
            if page.user is None and page.cursor is None:
                document = json_document(job_id, stats, services().store.iter_unit_arrays(job_id))
            else:
                document = json_rows_document(job_id, stats, page.rows())
            return Response(stream_with_context(document), mimetype="application/json")
        # a page (`limit`, at most 10,000 rows) is built whole, in every format: its next cursor
        # goes in the Link header (and in the JSON body)
        sessions = list(page.rows())
        headers = next_link(f"/jobs/{job_id}/sessions", page.next_cursor)
        if fmt == NDJSON:
            return Response(b"".join(ndjson_lines(iter(sessions))), mimetype=NDJSON, headers=headers)
        if fmt == CSV:
            return Response("".join(csv_lines(iter(sessions))), mimetype=CSV, headers=headers)
        body = {"job_id": job_id, "sessions": sessions, "stats": stats, "next_cursor": page.next_cursor}
        return json_response(body, 200, headers)


def next_link(path: str, cursor: str | None) -> dict[str, str]:
    """``Link: <path?...&cursor=...>; rel="next"`` (RFC 8288), the request's query with the next
    cursor, relative (never built from the request's host); none on the last page."""
    if not cursor:
        return {}
    query = {k: v for k, v in request.args.items() if k != "cursor"}
    query["cursor"] = cursor
    return {"Link": f'<{path}?{urlencode(query)}>; rel="next"'}
