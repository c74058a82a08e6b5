"""Sessionizer's HTTP API: validates jobs, enqueues them, and reads their state.

It never imports hdbscan, pandas or the Elasticsearch client: those live in ``worker/``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from worker.settings import load_settings

from .bodylimit import BoundedBody
from .errors import register_error_handlers
from .extensions import api, init_services


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Application factory: defaults, then the config sources, then extensions, then blueprints."""
    app = Flask(__name__)
    settings = load_settings()
    app.config.from_mapping(
        SESSIONIZER=settings,
        REDIS_URL=settings["redis"]["url"],
        JOB_TTL_S=settings["jobs"]["ttl_s"],
        MAX_RANGE_DAYS=settings["jobs"]["max_range_days"],
        MAX_USERS=settings["jobs"]["max_users"],
        RETRY_AFTER_S=settings["jobs"]["retry_after_s"],
        AUTH_REQUIRED=settings["auth"]["required"],
        API_KEYS=settings["auth"]["keys"],
        RATE_LIMIT_PER_S=settings["limits"]["rate_per_s"],
        RATE_LIMIT_BURST=settings["limits"]["rate_burst"],
        MAX_ACTIVE_JOBS=settings["limits"]["max_active_jobs"],
        MAX_WAIT_S=settings["limits"]["max_wait_s"],
        MAX_WAITS_PER_KEY=settings["limits"]["max_waits_per_key"],
        SHARE_RESULTS=settings["results"]["share"],
        MAX_CONTENT_LENGTH=1 << 20,
        API_TITLE="Sessionizer",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        # Swagger UI's assets come from the swagger-ui-bundle wheel, served below: /docs works
        # offline, with no CDN.
        OPENAPI_SWAGGER_UI_URL="/docs/static/",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Turn raw software-usage events into interaction sessions. "
                "Submit a job, then poll it until its sessions are ready. "
                "With API keys configured, send `Authorization: Bearer <key>`; a job is visible only "
                "to the key that submitted it.\n\n[Open the web page](/) to submit jobs and see their sessions "
                "on a timeline."
            },
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        },
    )
    if test_config:
        app.config.update(test_config)
    register_auth(app)
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    app.wsgi_app = BoundedBody(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
    return app


def register_auth(app: Flask) -> None:
    """API keys from ``API_KEYS`` (name:sha256 pairs); refuse to start with auth on and no key."""
    from .auth import parse_keys

    app.config["API_KEY_DIGESTS"] = parse_keys(app.config["API_KEYS"])
    if app.config["AUTH_REQUIRED"] and not app.config["API_KEY_DIGESTS"]:
        raise RuntimeError("AUTH_REQUIRED is on but no API key is configured (API_KEYS)")


def register_extensions(app: Flask) -> None:
    api.init_app(app)
    init_services(app)


def register_blueprints(app: Flask) -> None:
    from .health import blp as health_blp
    from .jobs.views import blp as jobs_blp
    from .page import bp as page
    from .page import document_method_params
    from .swagger import bp as swagger_assets

    api.register_blueprint(jobs_blp)
    api.register_blueprint(health_blp)
    document_method_params(api, app)
    app.register_blueprint(swagger_assets)
    app.register_blueprint(page)
