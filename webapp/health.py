"""Liveness (``/healthz``) and readiness (``/readyz``)."""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery
from flask.views import MethodView
from flask_smorest import Blueprint
from kombu.exceptions import OperationalError
from marshmallow import Schema, fields

from .extensions import services

blp = Blueprint("health", __name__, description="Service health.")

BROKER_TIMEOUT_S = 2.0


class HealthSchema(Schema):
    status = fields.String()
    redis = fields.String()


class ReadinessSchema(Schema):
    status = fields.String(metadata={"description": "`ready`, or `unavailable`"})
    redis = fields.String(metadata={"description": "`ok` or `unreachable`"})
    broker = fields.String(metadata={"description": "`ok` or `unreachable`"})
    workers = fields.Integer(metadata={"description": "Celery workers with a live heartbeat"})


@blp.route("/healthz")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="Redis is unreachable")
    def get(self) -> Any:
        """Is the API up, and can it reach Redis?"""
        try:
            services().store.client.ping()
        except redis.RedisError:
            return {"status": "unavailable", "redis": "unreachable"}, 503
        return {"status": "ok", "redis": "ok"}


def broker_answers(celery: Celery) -> bool:
    """Open a fresh broker connection: a pooled one would say "connected" after the broker died."""
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_S)
            conn.default_channel  # noqa: B018  (the Redis transport pings when it opens a channel)
        return True
    except (OperationalError, OSError, redis.RedisError):
        return False


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.response(200, ReadinessSchema)
    @blp.alt_response(
        503, schema=ReadinessSchema, description="Redis or the broker does not answer, or no worker is alive"
    )
    def get(self) -> Any:
        """Can a job submitted now run: Redis and the broker answer, and at least one worker is alive?"""
        svc = services()
        try:
            workers = svc.workers.alive()
            redis_state = "ok"
        except redis.RedisError:
            workers, redis_state = 0, "unreachable"
        broker = "ok" if broker_answers(svc.celery) else "unreachable"
        ready = redis_state == "ok" and broker == "ok" and workers > 0
        body = {
            "status": "ready" if ready else "unavailable",
            "redis": redis_state,
            "broker": broker,
            "workers": workers,
        }
        return body, 200 if ready else 503
