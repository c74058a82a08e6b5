"""How the jobs views answer: job bodies, polling headers, JSON, and the caller's job or 404."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson
from flask import Response, g, request
from flask_smorest import abort

from sessionizer.jobstore import JobRecord

from ..errors import NO_JOB
from ..extensions import services
from ..jobids import check_job_id
from ..jsonguard import MAX_DEPTH, MAX_NUMBER_CHARS, too_deep, too_long_number
from .schemas import JobSchema

PUBLIC = tuple(JobSchema().fields)


def job_body(job: JobRecord) -> dict[str, Any]:
    """The job as documented (``JobSchema``), with its links."""
    base = f"/jobs/{job.id}"
    fields = job.as_json()
    body = {k: fields[k] for k in PUBLIC if k in fields}
    body["links"] = {"self": base, "sessions": f"{base}/sessions", "cancel": f"{base}/cancel"}
    return body


def polling_headers(job: JobRecord) -> dict[str, str]:
    """``Retry-After`` while the job is queued or running."""
    if job.active:
        return {"Retry-After": str(services().settings.jobs.retry_after_s)}
    return {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Job bodies are plain data already shaped as documented: orjson, not a field-by-field dump.
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def get_job_or_404(job_id: str) -> JobRecord:
    """The caller's job; another key's job is as unknown as a job never issued. A job read past its
    deadline is recorded failed here (reads never write: this is the explicit step)."""
    check_job_id(job_id)  # before any store access
    store = services().store
    job = store.view(job_id)
    if job is not None and job.overdue:
        store.expire_overdue(job_id)
    if job is None or job.owner != g.owner:
        abort(404, message=NO_JOB)
    return job


def require_json(view: Callable[..., Any]) -> Callable[..., Any]:
    """415 for a body that is not JSON, and 422 for one nested deeper than a job can be or holding
    a number longer than any field takes, before anything parses it (Python's parser recurses once
    per level, and refuses to convert an integer of thousands of digits with a ValueError)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not request.is_json:
            abort(415, message=f"Send the job as application/json (got {request.mimetype or 'no content type'}).")
        body = request.get_data(cache=True)
        field = too_deep(body)
        if field is not None:
            abort(422, messages={"json": {field or "_schema": [f"Nested more than {MAX_DEPTH} levels deep."]}})
        field = too_long_number(body)
        if field is not None:
            abort(
                422, messages={"json": {field or "_schema": [f"A number longer than {MAX_NUMBER_CHARS} characters."]}}
            )
        return view(*args, **kwargs)

    return wrapper


def no_query(view: Callable[..., Any]) -> Callable[..., Any]:
    """422 naming each query parameter of an operation that takes none: nothing is ignored
    silently (a key sent as ``?api_key=`` is refused, not dropped)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if request.args:
            abort(422, messages={"query": {name: ["Unknown parameter."] for name in request.args}})
        return view(*args, **kwargs)

    return wrapper
