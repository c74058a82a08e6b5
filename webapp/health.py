"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import redis
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from .extensions import services

blp = Blueprint("health", __name__, description="Service health.")


class HealthSchema(Schema):
    status = fields.String()
    redis = fields.String()


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
