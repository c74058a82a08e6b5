"""Marshmallow schemas of the jobs resource: ``<Thing>ArgsSchema`` in, ``<Thing>Schema`` out.

Their fields are in ``fields.py``, the methods' parameters in ``params.py``, the cursor field
in ``webapp/cursors.py`` and the problem answers in ``webapp/errors.py``.
"""

from __future__ import annotations

from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from sessionizer.methods import DEFAULT_METHOD, SPLIT_REASONS
from sessionizer.methods import METHODS as SPECS
from sessionizer.methods import defaults as declared_defaults
from sessionizer.status import JobStatus
from sessionizer.webhooks.guard import refusal

from ..cursors import Cursor, listing_scope, sessions_scope
from ..errors import JobErrorSchema
from ..extensions import settings
from .fields import EARLIEST, LATEST, IsoDateTime, Text, to_utc_iso
from .params import PARAMS_SCHEMAS

# The seed tutorial's field names, accepted as aliases of ours.
ALIASES = {"utils": "users", "date_min": "start", "date_max": "end"}
CANONICAL_TO_ALIAS = {v: k for k, v in ALIASES.items()}


def _bad_group_by() -> bool:
    raise ValidationError('Must be ["user"] or ["user", "instance"].')


class JobArgsSchema(Schema):
    """A sessionization job: whose events, over which range, and how to cut them into sessions."""

    class Meta:
        unknown = RAISE

    users = fields.List(
        Text(validate=validate.Length(min=1, max=256)),
        required=True,
        metadata={
            "description": "Users whose sessions are wanted (1..1000, unique). Alias: `utils`.",
            "example": ["romain", "anes"],
        },
    )
    start = IsoDateTime(
        required=True,
        metadata={
            "description": f"Range start, ISO-8601 (no offset = UTC), from {to_utc_iso(EARLIEST)} to "
            f"{to_utc_iso(LATEST)}. Alias: `date_min`.",
            "example": "2022-09-22T11:00Z",
            "type": "string",
            "format": "date-time",
        },
    )
    end = IsoDateTime(
        required=True,
        metadata={
            "description": "Range end, after `start`, within the same bounds. Alias: `date_max`.",
            "example": "2022-09-28T12:00+02:00",
            "type": "string",
            "format": "date-time",
        },
    )
    method = fields.String(
        load_default=DEFAULT_METHOD,
        validate=validate.OneOf(tuple(SPECS)),
        metadata={"description": "`hdbscan` (density on the time axis) or `gap` (inactivity gap)."},
    )
    params = fields.Dict(
        keys=Text(),
        load_default=dict,
        metadata={
            "description": "Method parameters: HdbscanParams or GapParams, as `method` says.",
            # the components webapp/page.py registers from PARAMS_SCHEMAS
            "anyOf": [{"$ref": f"#/components/schemas/{method.capitalize()}Params"} for method in SPECS],
        },
    )
    group_by = fields.List(
        fields.String(validate=validate.OneOf(["user", "instance"])),
        load_default=lambda: ["user"],
        validate=lambda v: v in (["user"], ["user", "instance"]) or _bad_group_by(),
        metadata={"description": '`["user"]` or `["user", "instance"]` (sessions per user and instance).'},
    )

    callback_url = Text(
        validate=validate.Length(min=1, max=2048),
        metadata={
            "description": "Where to push the job's final event (`job.succeeded`, `job.failed`, "
            "`job.cancelled`), signed as Standard Webhooks specifies: an https URL whose host "
            'resolves to public addresses only (docs/api.md: "Completion push"). Polling stays '
            "the source of truth."
        },  # no example: the fuzz tests would resolve it
    )

    @pre_load
    def _accept_aliases(self, data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, dict):
            return data
        both = {a: c for a, c in ALIASES.items() if a in data and c in data}
        if both:
            raise ValidationError({a: [f"Give either `{c}` or its alias `{a}`, not both."] for a, c in both.items()})
        return {ALIASES.get(k, k): v for k, v in data.items()}

    def handle_error(self, error: ValidationError, data: Any, **kwargs: Any) -> None:
        """Name each field as the client wrote it (``date_max`` stays ``date_max``)."""
        messages = error.messages
        if not isinstance(messages, dict) or not isinstance(data, dict):
            return
        renamed: dict[str, Any] = {}
        for name, msgs in messages.items():
            alias = CANONICAL_TO_ALIAS.get(name)
            if alias and alias in data and name not in data:
                renamed[alias] = msgs
            elif alias and name not in data:
                renamed[name] = (
                    [f"{m.rstrip('.')} (`{name}`, or its alias `{alias}`)." for m in msgs]
                    if isinstance(msgs, list)
                    else msgs
                )
            else:
                renamed[name] = msgs
        raise ValidationError(renamed, data=data)

    @validates_schema
    def _check(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        users = data.get("users")
        jobs = settings().jobs
        max_users = jobs.max_users
        if users is not None:
            if not users or len(users) > max_users:
                errors["users"] = [f"Give between 1 and {max_users} users."]
            elif len(set(users)) != len(users):
                dup = sorted({u for u in users if users.count(u) > 1})
                errors["users"] = [f"Users must be unique; repeated: {', '.join(dup[:5])}."]
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start >= end:
                errors["end"] = ["Must be after `start`."]
            elif (end - start).total_seconds() > jobs.max_range_days * 86400:
                errors["end"] = [f"The range may span at most {jobs.max_range_days} days."]
        url = data.get("callback_url")
        if url is not None:
            why = refusal(url, settings().webhooks.allow_private)
            if why:
                errors["callback_url"] = [why]
        method = data.get("method", DEFAULT_METHOD)
        if method in PARAMS_SCHEMAS:
            param_errors = PARAMS_SCHEMAS[method]().validate(data.get("params") or {})
            if param_errors:
                errors["params"] = param_errors
        if errors:
            raise ValidationError(errors)

    @post_load
    def _normalise(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        method = data["method"]
        # a default that derives from another parameter (None) is left to the core
        defaults = {k: v for k, v in declared_defaults(method).items() if v is not None}
        given = PARAMS_SCHEMAS[method]().load(data.get("params") or {})
        # a callback is the job's, not the computation's: the submit keeps it off the request
        callback = {"callback_url": data["callback_url"]} if data.get("callback_url") else {}
        return {
            **callback,
            "users": data["users"],
            "start": to_utc_iso(data["start"]),
            "end": to_utc_iso(data["end"]),
            "method": method,
            "params": {**defaults, **given},
            "group_by": data["group_by"],
        }


class JobRequestSchema(Schema):
    users = fields.List(fields.String())
    start = fields.String(metadata={"format": "date-time"})
    end = fields.String(metadata={"format": "date-time"})
    method = fields.String()
    params = fields.Dict()
    group_by = fields.List(fields.String())


class ProgressSchema(Schema):
    users_total = fields.Integer()
    users_done = fields.Integer()
    events_scanned = fields.Integer(
        metadata={
            "description": "Documents of the requested users that the job "
            "used: their events in the read range, and their documents that "
            "broke the event rules."
        }
    )
    events_from_source = fields.Integer(
        metadata={
            "description": "Of the documents read, those this job read from "
            "Elasticsearch or the event files itself; the rest came from the "
            "event store. Counted as each unit finishes."
        }
    )


class LinksSchema(Schema):
    self = fields.String()
    sessions = fields.String()
    cancel = fields.String()


class JobSchema(Schema):
    """A job's state. Poll it until ``status`` is ``succeeded``, ``failed`` or ``cancelled``."""

    id = fields.String()
    status = fields.String(validate=validate.OneOf([s.value for s in JobStatus]))
    request = fields.Nested(JobRequestSchema)
    progress = fields.Nested(ProgressSchema)
    submitted_at = fields.String(metadata={"format": "date-time"})
    started_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    finished_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    deadline_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    error = fields.Nested(JobErrorSchema, allow_none=True)
    shared = fields.Boolean(
        metadata={
            "description": (
                "True when this job follows an earlier computation of the same request on the same data "
                "(shared results) instead of reading the events itself."
            )
        }
    )
    computed_at = fields.String(
        allow_none=True,
        metadata={
            "format": "date-time",
            "description": (
                "When the computation whose result this job gives started reading the events; null while "
                "queued, and for a computation another API key started (sharing across keys)."
            ),
        },
    )
    links = fields.Nested(LinksSchema)


class SessionSchema(Schema):
    user = fields.String()
    instance = fields.String()
    start = fields.String(metadata={"format": "date-time"})
    end = fields.String(metadata={"format": "date-time"})
    duration_s = fields.Float()
    events = fields.Integer()
    entry_screen = fields.String()
    exit_screen = fields.String()
    truncated_start = fields.Boolean(metadata={"description": "The session may have begun before the events read."})
    truncated_end = fields.Boolean(metadata={"description": "The session may go on after the events read."})
    split_reason = fields.String(
        validate=validate.OneOf(tuple(SPLIT_REASONS)),
        metadata={
            "description": "Why the session ended: " + "; ".join(f"`{k}`: {v}" for k, v in SPLIT_REASONS.items()) + "."
        },
    )
    session_id = fields.String(
        metadata={
            "description": (
                "16 hex characters derived from the user, the grouping key (the instance with group_by "
                '["user", "instance"]) and the first event\'s millisecond: the same session has the same id '
                "in any range and any rerun."
            ),
            "example": "3f2a9c0d4b1e7a65",
        }
    )
    screens = fields.Integer(metadata={"description": "Distinct screens among the session's events."})
    engaged = fields.Boolean(
        metadata={
            "description": (
                "GA4's rule: the session lasts at least `params.engaged_min_s` seconds, or has at least "
                "`params.engaged_min_views` events."
            )
        }
    )
    active_s = fields.Float(
        metadata={
            "description": (
                "Sum of the gaps between consecutive events of at most `params.active_gap_s` seconds: time "
                "spent active, at most `duration_s`."
            )
        }
    )


class StatsSchema(Schema):
    users = fields.Integer(metadata={"description": "Users with at least one event in the range."})
    events = fields.Integer(metadata={"description": "Valid events in the range."})
    invalid_events = fields.Integer(metadata={"description": "Documents skipped because they broke the event schema."})
    noise_events = fields.Integer(metadata={"description": "Events in the range that belong to no session."})
    sessions = fields.Integer()
    engaged_sessions = fields.Integer(metadata={"description": "Sessions that are `engaged`."})
    bounce_rate = fields.Float(
        allow_none=True, metadata={"description": ("1 - the share of engaged sessions (null without sessions).")}
    )
    median_duration_s = fields.Float(
        allow_none=True,
        metadata={
            "description": ("Median `duration_s` of the sessions (linear interpolation; null without sessions).")
        },
    )
    p90_duration_s = fields.Float(
        allow_none=True,
        metadata={
            "description": (
                "90th percentile of `duration_s` (linear interpolation, as NumPy's default; null without sessions)."
            )
        },
    )
    sessions_per_user_median = fields.Float(
        allow_none=True,
        metadata={
            "description": ("Median number of sessions of the users that have at least one (null without sessions).")
        },
    )


class SessionsSchema(Schema):
    job_id = fields.String()
    sessions = fields.List(fields.Nested(SessionSchema))
    stats = fields.Nested(StatsSchema)
    next_cursor = fields.String(
        allow_none=True,
        metadata={"description": "With `limit`: give it as `cursor` for the next page; null on the last page."},
    )


class JobListQueryArgsSchema(Schema):
    class Meta:
        unknown = RAISE  # an unknown parameter (``?format=csv``, ``?api_key=...``) is a 422, not ignored

    status = fields.String(
        validate=validate.OneOf([s.value for s in JobStatus]), metadata={"description": "Only jobs in this status."}
    )
    limit = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "Jobs per page (1..100, default 20)."},
    )
    cursor = Cursor(1, listing_scope, metadata={"description": "`next_cursor` of the previous page."})


class SessionsQueryArgsSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(
        validate=validate.Range(min=1, max=10_000),
        metadata={"description": "Sessions per page (1..10000); without it, every session."},
    )
    cursor = Cursor(2, sessions_scope, metadata={"description": "`next_cursor` of the previous page."})
    user = Text(validate=validate.Length(min=1, max=256), metadata={"description": "Only this user's sessions."})


PREFER_MAX = 200
PREFER = fields.String(
    data_key="Prefer",
    validate=validate.Length(max=PREFER_MAX),
    metadata={
        "description": "RFC 7240. `wait=N` (N <= 60 s) holds the answer until the job has finished or N "
        "seconds have passed; `Preference-Applied` says it was honoured."
    },
)


class SubmitHeadersSchema(Schema):
    prefer = PREFER
    idempotency_key = Text(
        data_key="Idempotency-Key",
        validate=validate.Length(min=1, max=255),
        metadata={
            "description": "Makes a retried submit safe: the same key and body give back the original "
            "job (`Idempotent-Replayed: true`); the same key with another body is a 422; "
            "a retry while the first is still being created is a 409. A key lives as long "
            "as its job."
        },
    )
    cache_control = fields.String(
        data_key="Cache-Control",
        validate=validate.Length(max=200),
        metadata={"description": "`no-cache` runs the job afresh instead of reusing an identical request's result."},
    )


class JobListSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema))
    next_cursor = fields.String(
        allow_none=True, metadata={"description": "Give it as `cursor` for the next page; null on the last page."}
    )
