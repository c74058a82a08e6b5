"""A request id on every request: taken from ``X-Request-ID`` when it is a plain token, else made
here; sent back in ``X-Request-ID`` and written with any error logged for the request, so a
client's report of a failure leads to its one traceback."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, has_request_context, request

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
    @app.after_request
    def send_request_id(response: Response) -> Response:
        response.headers[HEADER] = request_id()
        return response
