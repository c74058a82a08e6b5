"""A request id on every request: taken from ``X-Request-ID`` when it is a plain token, else made
here; sent back in ``X-Request-ID``, written with any error logged for the request, so a client's
report of a failure leads to its one traceback, and carried by every log line written while the
request is served, with the job id when the path names one (``sessionizer/logs.py``)."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, has_request_context, request

from sessionizer import logs

HEADER = "X-Request-ID"
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_id() -> str:
    """This request's id ('-' outside a request)."""
    if not has_request_context():
        return "-"
    if "request_id" not in g:
        given = request.headers.get(HEADER, "")
        g.request_id = given if _TOKEN.match(given) else uuid.uuid4().hex
    return str(g.request_id)


def register_request_id(app: Flask) -> None:
    @app.before_request
    def bind_log_context() -> None:
        # set, not bound in a block: gunicorn writes the access line after the app has returned,
        # in the same greenlet, and that line carries the id too; the next request sets its own
        job_id = (request.view_args or {}).get("job_id")
        logs.set_context(request_id=request_id(), job_id=str(job_id) if job_id else None, unit=None)

    @app.after_request
    def send_request_id(response: Response) -> Response:
        response.headers[HEADER] = request_id()
        return response
