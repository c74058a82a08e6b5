"""The API's extensions: the flask-smorest ``Api`` and the services every request uses (the
settings, the job store, the Celery sender, the API keys)."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import Flask, current_app
from flask_smorest import Api

from sessionizer.celery_app import make_celery
from sessionizer.jobstore import JobStore
from sessionizer.jobstore.liveness import WorkerRegistry, fail_fast_client
from sessionizer.settings import Settings

from .errors import ProblemApi

api: Api = ProblemApi()


@dataclass
class Services:
    settings: Settings
    store: JobStore
    celery: Celery
    key_digests: dict[str, str]  # sha256 hex -> key name
    # Readiness reads through a client that fails fast: the store's client rides out a Redis
    # restart with ~20 s of retries, longer than any probe waits.
    workers: WorkerRegistry


def init_services(app: Flask, settings: Settings) -> None:
    """Build the services; refuse to start with auth required and no key configured."""
    from sessionizer.webhooks.signing import parse_secrets

    from .auth import parse_keys

    digests = parse_keys(settings.auth.keys)
    if settings.auth.required and not digests:
        raise RuntimeError("AUTH_REQUIRED is on but no API key is configured (API_KEYS)")
    parse_secrets(settings.webhooks.secrets.value if settings.webhooks.secrets else "")  # malformed: refuse to start
    app.extensions["sessionizer"] = Services(
        settings=settings,
        store=JobStore.from_url(settings.redis.url, settings.jobs.ttl_s, fail_fast=True),
        celery=make_celery(settings, fail_fast=True),
        key_digests=digests,
        workers=WorkerRegistry(fail_fast_client(settings.redis.url), ttl_s=settings.workers.heartbeat_ttl_s),
    )


def services() -> Services:
    found: Services = current_app.extensions["sessionizer"]
    return found


def settings() -> Settings:
    """The settings of the app handling this request."""
    return services().settings
