"""The jobs resource: list, submit, poll (or wait), read sessions (paged, NDJSON, CSV), cancel, delete."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Response, g, request, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from sessionizer import tasks
from sessionizer.jobstore import TooManyActiveJobs
from sessionizer.status import ACTIVE

from ..auth import authenticate
from ..errors import PROBLEM
from ..extensions import services, settings
from ..limits import check_rate, prefer_wait, wait_slot, wait_until_finished
from .schemas import (
    PREFER,
    PREFER_MAX,
    JobArgsSchema,
    JobListQueryArgsSchema,
    JobListSchema,
    JobSchema,
    ProblemSchema,
    SessionSchema,
    SessionsQueryArgsSchema,
    SessionsSchema,
    SubmitHeadersSchema,
    encode_cursor,
)

blp = Blueprint("jobs", __name__, url_prefix="/jobs", description="Sessionization jobs: submit, then poll.")

PUBLIC = tuple(JobSchema().fields)
SESSION_FIELDS = tuple(SessionSchema().fields)
NDJSON, CSV = "application/x-ndjson", "text/csv"
RETRY_AFTER = {"description": "Seconds to wait before polling again", "schema": {"type": "integer"}}
LINK = {"description": "`</jobs/...?cursor=...>; rel=\"next\"` when a `limit` left sessions for a next page",
        "schema": {"type": "string"}}
PREFERENCE_APPLIED = {"description": "`wait=N` when `Prefer: wait=N` was honoured", "schema": {"type": "string"}}


def problems(*codes: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Document problem+json answers (RFC 9457) for an operation."""
    text = {
        400: "Malformed JSON", 401: "No valid API key (`WWW-Authenticate: Bearer`)",
        404: "Never issued, expired, deleted, or another key's job", 409: "Conflict (see `detail`)",
        413: "Body over 1 MiB", 415: "Not application/json", 422: "Invalid request (field messages in `errors`)",
        429: "Rate limit or concurrent-jobs cap reached (`Retry-After`)", 503: "Task queue unavailable (`Retry-After`)",
    }

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        for code in reversed(codes):
            headers = {"Retry-After": RETRY_AFTER} if code in (409, 429, 503) else None
            if code == 401:
                headers = {"WWW-Authenticate": {"description": "`Bearer realm=\"sessionizer\"`", "schema": {"type": "string"}}}
            view = blp.alt_response(code, schema=ProblemSchema, description=text[code], content_type=PROBLEM,
                                    headers=headers)(view)
        # a key is needed where the deployment requires one (AUTH_REQUIRED), optional elsewhere
        return blp.doc(security=[{"bearerAuth": []}, {}])(view)

    return decorate


@blp.before_request
def guard() -> None:
    """Every jobs request: who is calling (API key), and within their rate?"""
    g.owner = authenticate()
    check_rate(services().store, g.owner)


def require_json(view: Callable[..., Any]) -> Callable[..., Any]:
    """415 for a body that is not JSON, before anything tries to parse it."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not request.is_json:
            abort(415, message=f"Send the job as application/json (got {request.mimetype or 'no content type'}).")
        return view(*args, **kwargs)

    return wrapper


def job_body(job: dict[str, Any]) -> dict[str, Any]:
    base = f"/jobs/{job['id']}"
    body = {k: job[k] for k in PUBLIC if k in job}
    body["links"] = {"self": base, "sessions": f"{base}/sessions", "cancel": f"{base}/cancel"}
    return body


def polling_headers(job: dict[str, Any]) -> dict[str, str]:
    if job["status"] in ACTIVE:
        return {"Retry-After": str(settings().jobs.retry_after_s)}
    return {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Job bodies are plain data already shaped as documented: orjson, not a field-by-field dump.
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def get_job_or_404(job_id: str) -> dict[str, Any]:
    """The caller's job; another key's job is as unknown as a job never issued."""
    job = services().store.view(job_id)
    if job is None or job["owner"] != g.owner:
        abort(404, message=f"No job {job_id}: it was never issued, or it has expired.")
    return job  # type: ignore[return-value]


def waited(job: dict[str, Any], prefer: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Honour ``Prefer: wait=N``: hold until the job has finished or N seconds have passed.

    A key already holding ``MAX_WAITS_PER_KEY`` waits gets its answer at once, without
    ``Preference-Applied`` (RFC 7240 lets a server decline a preference).
    """
    seconds = prefer_wait(prefer)
    if seconds is None:
        return job, {}
    store = services().store
    with wait_slot(store, g.owner, seconds) as granted:
        if not granted:
            return job, {}
        return wait_until_finished(store, job, seconds), {"Preference-Applied": f"wait={seconds}"}


def request_digest(job_request: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(job_request, option=orjson.OPT_SORT_KEYS)).hexdigest()


def shareable(job_request: dict[str, Any], cache_control: str | None) -> tuple[bool, bool]:
    """(may share an identical request's result, must run afresh)."""
    fresh = "no-cache" in {d.strip().split("=")[0].lower() for d in (cache_control or "").split(",")}
    past = datetime.fromisoformat(job_request["end"]) <= datetime.now(timezone.utc)
    return settings().results.share and past, fresh


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(JobListQueryArgsSchema, location="query")
    @blp.response(200, JobListSchema)
    @problems(401, 422, 429)
    def get(self, args: dict[str, Any]) -> Any:
        """List the caller's jobs, newest first (cursor-paged)"""
        cursor = args.get("cursor")
        jobs, last = services().store.list_jobs(
            g.owner, limit=args["limit"], status=args.get("status"), before_seq=cursor[0] if cursor else None)
        return json_response({"jobs": [job_body(j) for j in jobs], "next_cursor": encode_cursor(last) if last else None})

    @require_json
    @blp.arguments(SubmitHeadersSchema, location="headers")
    @blp.arguments(JobArgsSchema)
    @blp.response(202, JobSchema, headers={
        "Location": {"description": "The job's URL, to poll", "schema": {"type": "string"}},
        "Retry-After": RETRY_AFTER,
        "Preference-Applied": PREFERENCE_APPLIED,
        "Idempotent-Replayed": {"description": "`true` when this is the original job of a retried submit",
                                "schema": {"type": "string"}},
    })
    @problems(400, 401, 409, 413, 415, 422, 429, 503)
    def post(self, headers: dict[str, Any], job_request: dict[str, Any]) -> Any:
        """Submit a sessionization job"""
        store = services().store
        key = headers.get("idempotency_key")
        digest = request_digest(job_request)
        if key:
            state, prior = store.idempotency_reserve(g.owner, key, digest)
            if state == "mismatch":
                abort(422, message="This Idempotency-Key was used with a different request body.",
                      errors={"Idempotency-Key": ["Already used with a different request body."]})
            if state == "pending":
                abort(409, message="A request with this Idempotency-Key is still being processed; retry shortly.",
                      headers={"Retry-After": "1"})
            if state == "replay" and prior:
                job = store.view(prior)
                if job is not None and job["owner"] == g.owner:
                    return self._answer(job, headers, {"Idempotent-Replayed": "true"})
        try:
            job = self._create(job_request, headers, key)
        except BaseException:
            if key:
                store.idempotency_release(g.owner, key)
            raise
        if key:
            store.idempotency_commit(g.owner, key, digest, job["id"])
        return self._answer(job, headers, {})

    @staticmethod
    def _create(job_request: dict[str, Any], headers: dict[str, Any], key: str | None) -> dict[str, Any]:
        svc = services()
        cfg = svc.settings
        share, fresh = shareable(job_request, headers.get("cache_control"))
        try:
            job, needs_plan = svc.store.submit(
                job_request, deadline_s=cfg.job_deadline_s(job_request), owner=g.owner, share=share, fresh=fresh,
                idempotency_key=key, max_active=cfg.limits.max_active_jobs)
        except TooManyActiveJobs as exc:
            abort(429, message=f"This API key already has {exc.active} jobs queued or running "
                  f"(at most {cfg.limits.max_active_jobs}); wait for one to finish.",
                  headers={"Retry-After": str(cfg.jobs.retry_after_s)})
        if needs_plan:
            try:
                svc.celery.send_task(tasks.PLAN, args=(job["id"],))
            except Exception as exc:  # the broker is down: say so, and leave no orphan job behind
                svc.store.fail(job["id"], "enqueue_failed", "the task queue could not be reached")
                abort(503, message=f"The task queue is unavailable ({type(exc).__name__}); retry later.",
                      headers={"Retry-After": "5"})
        return job

    @staticmethod
    def _answer(job: dict[str, Any], headers: dict[str, Any], extra: dict[str, str]) -> Response:
        job, applied = waited(job, headers.get("prefer"))
        out = {"Location": f"/jobs/{job['id']}", **polling_headers(job), **applied, **extra}
        return json_response(job_body(job), 202, out)


@blp.route("/<string:job_id>")
class JobsById(MethodView):
    # The poll path: its one header is read directly (documented below) rather than through a
    # webargs schema, which cost about a fifth of a poll's CPU.
    @blp.doc(parameters=[{"in": "header", "name": "Prefer", "required": False,
                          "schema": {"type": "string", "maxLength": PREFER_MAX},
                          "description": PREFER.metadata["description"]}])
    @blp.response(200, JobSchema, headers={"Retry-After": RETRY_AFTER, "Preference-Applied": PREFERENCE_APPLIED})
    @problems(401, 404, 422, 429)
    def get(self, job_id: str) -> Any:
        """Get a job's state and progress (`Prefer: wait=N` to wait for it)"""
        prefer = request.headers.get("Prefer")
        if prefer is not None and len(prefer) > PREFER_MAX:
            abort(422, messages={"headers": {"Prefer": [f"Longer than maximum length {PREFER_MAX}."]}})
        job, applied = waited(get_job_or_404(job_id), prefer)
        return json_response(job_body(job), 200, {**polling_headers(job), **applied})

    @blp.response(204)
    @problems(401, 404, 429)
    def delete(self, job_id: str) -> Any:
        """Cancel a job if it is still running, then forget it and its results (later reads: 404)"""
        store = services().store
        get_job_or_404(job_id)
        store.cancel(job_id, "deleted by the client")
        store.delete(job_id)
        return Response(status=204)


@blp.route("/<string:job_id>/cancel")
class JobCancel(MethodView):
    @blp.response(202, JobSchema)
    @problems(401, 404, 429)
    def post(self, job_id: str) -> Any:
        """Cancel a job: queued units are skipped, running ones stop at their next page"""
        store = services().store
        get_job_or_404(job_id)
        store.cancel(job_id)  # a finished job stays as it is; a shared computation goes on for the others
        return json_response(job_body(get_job_or_404(job_id)), 202)


def _csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SESSION_FIELDS)
    for row in rows:
        writer.writerow(["true" if v is True else "false" if v is False else v for v in (row.get(f) for f in SESSION_FIELDS)])
        if buf.tell() > 1 << 16:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


@blp.route("/<string:job_id>/sessions")
class JobSessions(MethodView):
    @blp.arguments(SessionsQueryArgsSchema, location="query")
    @blp.response(200, SessionsSchema, headers={"Link": LINK})
    @blp.doc(responses={"200": {"description": "OK", "headers": {"Link": LINK}, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Sessions"}},
        NDJSON: {"schema": {"type": "string", "description": "One session (as `Session`) per line, streamed"}},
        CSV: {"schema": {"type": "string", "description": "A header row, then one session per row"}},
    }}})
    @problems(401, 404, 409, 422, 429)
    def get(self, args: dict[str, Any], job_id: str) -> Any:
        """Get the sessions of a succeeded job, sorted by (user, start): paged with `limit`/`cursor`,
        one user with `user`; `Accept: application/x-ndjson` or `text/csv` for those formats"""
        store = services().store
        job = get_job_or_404(job_id)
        if job["status"] in ACTIVE:
            abort(409, message=f"Job {job_id} is {job['status']}; poll /jobs/{job_id} until it has finished.",
                  headers=polling_headers(job), job_status=job["status"])
        if job["status"] != "succeeded":
            error = job["error"] or {}
            abort(409, message=f"Job {job_id} {job['status']}: {error.get('message', 'no reason recorded')}",
                  job_status=job["status"], error=error)
        unit, offset = args.get("cursor") or (0, 0)
        limit, user = args.get("limit"), args.get("user")
        state: dict[str, Any] = {"next": None}

        def rows() -> Iterator[dict[str, Any]]:
            n = 0
            for u, k, row in store.iter_sessions(job_id, unit, offset):
                if user is not None and row.get("user") != user:
                    continue
                if limit is not None and n == limit:
                    state["next"] = encode_cursor(u, k)
                    return
                n += 1
                yield row

        fmt = request.accept_mimetypes.best_match(["application/json", NDJSON, CSV], default="application/json")
        if fmt == NDJSON:
            lines = (orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows())
            return Response(stream_with_context(lines), mimetype=NDJSON)
        if fmt == CSV:
            return Response(stream_with_context(_csv_lines(rows())), mimetype=CSV)
        sessions = list(rows())
        headers = {}
        if state["next"]:
            query = {k: v for k, v in request.args.items() if k != "cursor"}
            query["cursor"] = state["next"]
            headers["Link"] = f'</jobs/{job_id}/sessions?{urlencode(query)}>; rel="next"'
        body = {"job_id": job_id, "sessions": sessions, "stats": job["stats"] or {}, "next_cursor": state["next"]}
        return json_response(body, 200, headers)
