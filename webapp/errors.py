"""Errors as RFC 9457 problem details (``application/problem+json``): the answers, their schema
(:class:`ProblemSchema`, and :class:`JobErrorSchema`, why a job failed), and the handlers."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from flask import Flask, Response, request
from flask_smorest import Api
from marshmallow import INCLUDE, Schema, fields
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from .requestid import register_request_id, request_id

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
# Every 404 under /jobs/ reads the same, whether the id was malformed, never issued, expired,
# deleted or another key's: the answer tells nothing about which.
NO_JOB = "No such job: it was never issued, it has expired or been deleted."


class JobErrorSchema(Schema):
    type = fields.String()
    message = fields.String()


class ProblemSchema(Schema):
    """RFC 9457 problem details (extension members allowed)."""

    class Meta:
        unknown = INCLUDE

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict(metadata={"description": "Field messages (422 only)."})
    job_status = fields.String(metadata={"description": "The job's status (409 on its sessions)."})
    error = fields.Nested(
        JobErrorSchema, metadata={"description": "Why the job failed or was cancelled (409 on its sessions)."}
    )


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Response(json.dumps(body), status=status, mimetype=PROBLEM)


def _field_errors(messages: Any) -> Any:
    # webargs nests messages under their location ({"json": {...}}); clients want the fields.
    if isinstance(messages, dict) and len(messages) == 1:
        ((location, inner),) = messages.items()
        if location in {"json", "query", "headers", "path", "view_args", "form"}:
            return inner
    return messages


class ProblemApi(Api):
    """flask-smorest's ``Api`` answering every HTTP error as problem+json.

    Each operation documents its own problem answers (``application/problem+json``); the generic
    ``default`` JSON error response flask-smorest would add is left out, as it would be wrong.
    """

    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error: HTTPException) -> Response:
        data = getattr(error, "data", None) or {}
        extra: dict[str, Any] = {}
        detail = data.get("message") or error.description
        if error.code == 404 and request.path.startswith("/jobs/"):
            detail = NO_JOB
        if "messages" in data:
            errors = _field_errors(data["messages"])
            extra["errors"] = errors
            if error.code == 422:
                fields = ", ".join(sorted(errors)) if isinstance(errors, dict) else ""
                detail = f"The request is invalid: see `errors` ({fields})." if fields else "The request is invalid."
            elif errors == ["Invalid JSON body."] or (isinstance(errors, list) and errors):
                detail = "; ".join(map(str, errors))
        extra.update(
            {
                k: v
                for k, v in data.items()
                if k not in {"message", "messages", "headers", "exc", "schema"}
                and isinstance(v, (str, int, float, dict, list))
            }
        )
        response = problem(error.code or 500, error.name, detail, **extra)
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        valid = getattr(error, "valid_methods", None)
        if error.code == 405 and valid:  # RFC 9110: a 405 says which methods the resource has
            response.headers["Allow"] = ", ".join(valid)
        return response


def register_error_handlers(app: Flask) -> None:
    register_request_id(app)

    # Redis still unreachable after the client's retries: the service is unavailable, not broken.
    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def store_unavailable(error: redis.RedisError) -> Response:
        log.error(
            "job store unreachable (request %s %s %s): %s",
            request_id(),
            request.method,
            request.path,
            type(error).__name__,
        )
        response = problem(
            503, ServiceUnavailable().name, "The job store is unreachable; retry later.", request_id=request_id()
        )
        response.headers["Retry-After"] = "5"
        return response

    # HTTP errors go to ProblemApi.handle_http_exception (the more specific handler); this one
    # only sees the rest, logs it once with the request id, and says nothing of its content.
    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error (request %s %s %s)", request_id(), request.method, request.path)
        return problem(
            500,
            InternalServerError().name,
            f"An unexpected error occurred; it has been logged with request id {request_id()}.",
            request_id=request_id(),
        )
