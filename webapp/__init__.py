"""Sessionizer's HTTP API: validates jobs, enqueues them, and reads their state.

It imports the shared package ``sessionizer`` (settings, job store, task names), never
``worker/``: hdbscan, pandas, NumPy and the Elasticsearch client stay out of the API process.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from sessionizer.settings import ENVIRONMENT, MAX_BODY_BYTES, Settings, load_settings

from .bodylimit import register_body_limit
from .errors import register_error_handlers
from .extensions import api, init_services
from .hosts import register_allowed_hosts
from .jobids import register_job_id_converter


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Application factory: defaults, then the config sources, then extensions, then blueprints.

    ``test_config`` keys named like the settings' environment variables (``REDIS_URL``,
    ``MAX_WAIT_S``, ...) override the one settings object; the others are Flask's (``TESTING``).
    """
    app = Flask(__name__)
    test_config = dict(test_config or {})
    overrides = {k: test_config.pop(k) for k in list(test_config) if k in ENVIRONMENT}
    settings: Settings = load_settings(overrides=overrides)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
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
    app.config.update(test_config)
    register_allowed_hosts(app, settings)  # first: nothing is done for a host not ours
    register_extensions(app, settings)
    register_blueprints(app)
    register_error_handlers(app)
    register_body_limit(app)
    if settings.auth.trusted_proxy_hops:  # the client address (failed-auth limit) from X-Forwarded-For
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.auth.trusted_proxy_hops)  # type: ignore[method-assign]
    return app


def register_extensions(app: Flask, settings: Settings) -> None:
    from .errors import ProblemSchema
    from .metrics import init_metrics

    # flask-smorest registers a response per HTTP status with its own "Error" schema, another
    # shape than the problems this API returns: they refer to Problem instead.
    api.ERROR_SCHEMA = ProblemSchema
    init_metrics(app, settings)
    api.init_app(app)
    register_job_id_converter(app, api)
    init_services(app, settings)


def register_blueprints(app: Flask) -> None:
    from .health import blp as health_blp
    from .jobs import deliveries  # noqa: F401  (its routes join the jobs blueprint)
    from .jobs.views import blp as jobs_blp
    from .page import bp as page
    from .page import document_method_params, register_framing_policy
    from .swagger import bp as swagger_assets

    api.register_blueprint(jobs_blp)
    api.register_blueprint(health_blp)
    document_method_params(api, app)
    # flask-smorest registers its pagination schema whatever the API; this one pages with cursors
    api.spec.components.schemas.pop("PaginationMetadata", None)
    app.register_blueprint(swagger_assets)
    app.register_blueprint(page)
    register_framing_policy(app)
