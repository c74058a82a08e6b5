"""Job ids in URLs: only their documented form reaches the job store.

A job id is ``str(uuid.uuid4())``: 36 lowercase characters. The ``job_id`` converter takes any
path segment (so that a caller without a valid key still gets its 401 first), documents the form
in the OpenAPI document, and :func:`check_job_id` turns anything else (``<id>:done``,
``<id>%00``, a crafted key name) into the same 404 as a job never issued, for every key, before
any job key is read. The store refuses such ids too (``JobKeys``).
"""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api, abort
from werkzeug.routing import BaseConverter

from sessionizer.jobstore.keys import JOB_ID, is_job_id

from .errors import NO_JOB


class JobIdConverter(BaseConverter):
    """``<job_id:job_id>``: one path segment, documented as a job id (a lowercase UUID v4)."""

    regex = "[^/]+"


def check_job_id(job_id: str) -> None:
    """404, as for a job never issued, unless ``job_id`` has the form of an issued id."""
    if not is_job_id(job_id):
        abort(404, message=NO_JOB)


def register_job_id_converter(app: Flask, api: Api) -> None:
    """After ``api.init_app``, before the blueprints: the router knows ``<job_id:...>``, and the
    OpenAPI document gives the form."""
    app.url_map.converters["job_id"] = JobIdConverter
    api.register_converter(JobIdConverter, lambda _: {"type": "string", "format": "uuid", "pattern": JOB_ID.pattern})
