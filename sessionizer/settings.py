"""Typed settings: one frozen object built from ``config/defaults.toml``, then the environment,
then the git-ignored ``config/credentials.yml`` (secrets only).

This is the only module that reads ``os.environ``. The API (``create_app(test_config)``) and the
tests override the same object with :func:`load_settings`'s ``overrides``, keyed by the
environment variables' names. Standard library only (PyYAML is imported lazily, and only when a
credentials file exists): the API process imports it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The largest request body the API reads, declared or chunked (webapp/bodylimit.py, and
# serving/worker.py, which refuses a chunk declared over it before its bytes arrive).
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Secret:
    """A credential that never prints itself (logs, reprs, error messages)."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class RedisSettings:
    url: str


@dataclass(frozen=True)
class JobsSettings:
    ttl_s: int
    max_range_days: int
    max_users: int
    retry_after_s: int
    deadline_s: int


@dataclass(frozen=True)
class SourceSettings:
    kind: str
    events_path: str
    timestamp_field: str
    user_field: str
    screen_field: str
    instance_field: str


@dataclass(frozen=True)
class ElasticsearchSettings:
    url: str
    index: str
    page_size: int
    request_timeout_s: float
    verify_certs: bool
    slices: int
    retry_max_attempts: int
    retry_max_elapsed_s: float
    api_key: Secret | None = None
    username: Secret | None = None
    password: Secret | None = None


@dataclass(frozen=True)
class CelerySettings:
    visibility_timeout_s: int
    task_soft_time_limit_s: int
    task_time_limit_s: int
    restore_interval_s: int


@dataclass(frozen=True)
class AuthSettings:
    required: bool
    keys: str  # name:sha256 pairs: digests only, never keys
    failures_per_s: float  # wrong keys forgiven per second per client address
    failures_burst: int  # wrong keys a client address may send at once
    trusted_proxy_hops: int  # proxies whose X-Forwarded-For gives the client address
    allowed_hosts: str = ""  # Host names the API answers (webapp/hosts.py); empty: loopback and HOST


@dataclass(frozen=True)
class LimitsSettings:
    rate_per_s: float
    rate_burst: int
    max_active_jobs: int
    max_wait_s: float
    max_waits_per_key: int


@dataclass(frozen=True)
class ResultsSettings:
    share: bool
    share_across_keys: bool
    settle_s: float  # a result is shared only once everything it read is this old (sessionizer/datasource.py)


@dataclass(frozen=True)
class StoreSettings:
    """The workers' event store (worker/eventstore/): where, and how big it may grow."""

    dir: str  # empty: <var_dir>/event-store
    max_bytes: int  # least recently used files are evicted beyond this (0 = no bound)


@dataclass(frozen=True)
class WorkersSettings:
    """Each worker's heartbeat in Redis (readiness counts the live ones), its metrics endpoint."""

    heartbeat_interval_s: float
    heartbeat_ttl_s: float
    metrics_port: int  # 0 = no endpoint
    metrics_addr: str
    # Units' leases (worker/lease.py) and the reconciler that hands out again the units no live
    # lease holds (worker/reconcile.py).
    unit_lease_s: float = 30.0
    unit_max_attempts: int = 3  # a unit whose worker died this many times fails its job (worker_lost)
    reconcile_interval_s: float = 5.0


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool  # the API's /metrics and its per-request counting
    # prometheus_client's multiprocess folder (it reads PROMETHEUS_MULTIPROC_DIR itself); empty:
    # gunicorn's config and the worker each make one of their own
    multiproc_dir: str


@dataclass(frozen=True)
class LoggingSettings:
    format: str  # "text" or "json" (one object a line)
    level: str


@dataclass(frozen=True)
class StackSettings:
    """``make demo`` / ``make up``: where the local stack listens and keeps its data."""

    host: str
    port: int
    flower_port: int
    var_dir: str
    flower_basic_auth: Secret | None = None


@dataclass(frozen=True)
class WebhooksSettings:
    """Signed completion pushes (sessionizer/webhooks/, worker/webhooks/)."""

    allow_private: bool  # http and private, loopback, link-local addresses too: development and tests only
    retry_schedule_s: str  # seconds before each retry, comma-separated
    timeout_s: float  # each attempt, connection to last byte
    poll_interval_s: float  # how often each worker looks for due deliveries
    secret: Secret | None = None  # whsec_...: the deployment's, when the API runs without keys
    secrets: Secret | None = None  # "NAME:whsec_...,NAME2:whsec_...": one per API key name


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings
    jobs: JobsSettings
    source: SourceSettings
    elasticsearch: ElasticsearchSettings
    celery: CelerySettings
    auth: AuthSettings
    limits: LimitsSettings
    results: ResultsSettings
    store: StoreSettings
    workers: WorkersSettings
    metrics: MetricsSettings
    logging: LoggingSettings
    stack: StackSettings
    webhooks: WebhooksSettings

    @property
    def source_kind(self) -> str:
        """``EVENT_SOURCE``, else ``elasticsearch`` when ``ELASTICSEARCH_URL`` is set, else ``file``."""
        if self.source.kind:
            return self.source.kind
        return "elasticsearch" if self.elasticsearch.url else "file"

    def events_path(self) -> Path:
        return _under_root(self.source.events_path)

    def event_store_dir(self) -> Path:
        return _under_root(self.store.dir) if self.store.dir else self.var_dir() / "event-store"

    def var_dir(self) -> Path:
        return _under_root(self.stack.var_dir)

    def job_deadline_s(self, request: Mapping[str, Any]) -> float:
        """How long a job may run before it is failed.

        ``JOB_DEADLINE_S`` when set; otherwise long enough for a unit lost with its worker to be
        redelivered (the broker's visibility timeout) and run again (the task time limit), plus
        5 s per user-day of range. A job can be slow, but it can never stay running forever.
        """
        if self.jobs.deadline_s:
            return float(self.jobs.deadline_s)
        span = datetime.fromisoformat(request["end"]) - datetime.fromisoformat(request["start"])
        redelivery = self.celery.visibility_timeout_s + self.celery.task_time_limit_s
        return min(172_800.0, redelivery + 5.0 * len(request["users"]) * max(span.total_seconds() / 86400, 1.0))

    def replace(self, **overrides: Any) -> Settings:
        """A copy with some settings changed, named as their environment variables
        (``REDIS_URL``, ``MAX_WAIT_S``, ...); see :data:`ENVIRONMENT`."""
        return _apply(self, overrides)


# environment variable -> (section, field, type); secrets are ``Secret`` fields
ENVIRONMENT: dict[str, tuple[str, str, type]] = {
    "REDIS_URL": ("redis", "url", str),
    "JOB_TTL_S": ("jobs", "ttl_s", int),
    "MAX_RANGE_DAYS": ("jobs", "max_range_days", int),
    "MAX_USERS": ("jobs", "max_users", int),
    "RETRY_AFTER_S": ("jobs", "retry_after_s", int),
    "JOB_DEADLINE_S": ("jobs", "deadline_s", int),
    "EVENT_SOURCE": ("source", "kind", str),
    "EVENTS_PATH": ("source", "events_path", str),
    "FIELD_TIMESTAMP": ("source", "timestamp_field", str),
    "FIELD_USER": ("source", "user_field", str),
    "FIELD_SCREEN": ("source", "screen_field", str),
    "FIELD_INSTANCE": ("source", "instance_field", str),
    "ELASTICSEARCH_URL": ("elasticsearch", "url", str),
    "ELASTICSEARCH_INDEX": ("elasticsearch", "index", str),
    "ELASTICSEARCH_PAGE_SIZE": ("elasticsearch", "page_size", int),
    "ELASTICSEARCH_TIMEOUT_S": ("elasticsearch", "request_timeout_s", float),
    "ELASTICSEARCH_VERIFY_CERTS": ("elasticsearch", "verify_certs", bool),
    "ELASTICSEARCH_SLICES": ("elasticsearch", "slices", int),
    "ELASTICSEARCH_RETRY_MAX_ATTEMPTS": ("elasticsearch", "retry_max_attempts", int),
    "ELASTICSEARCH_RETRY_MAX_ELAPSED_S": ("elasticsearch", "retry_max_elapsed_s", float),
    "ELASTICSEARCH_API_KEY": ("elasticsearch", "api_key", Secret),
    "ELASTICSEARCH_USERNAME": ("elasticsearch", "username", Secret),
    "ELASTICSEARCH_PASSWORD": ("elasticsearch", "password", Secret),
    "CELERY_VISIBILITY_TIMEOUT_S": ("celery", "visibility_timeout_s", int),
    "CELERY_RESTORE_INTERVAL_S": ("celery", "restore_interval_s", int),
    "CELERY_SOFT_TIME_LIMIT_S": ("celery", "task_soft_time_limit_s", int),
    "CELERY_TIME_LIMIT_S": ("celery", "task_time_limit_s", int),
    "AUTH_REQUIRED": ("auth", "required", bool),
    "API_KEYS": ("auth", "keys", str),
    "AUTH_FAILURES_PER_S": ("auth", "failures_per_s", float),
    "AUTH_FAILURES_BURST": ("auth", "failures_burst", int),
    "TRUSTED_PROXY_HOPS": ("auth", "trusted_proxy_hops", int),
    "ALLOWED_HOSTS": ("auth", "allowed_hosts", str),
    "RATE_LIMIT_PER_S": ("limits", "rate_per_s", float),
    "RATE_LIMIT_BURST": ("limits", "rate_burst", int),
    "MAX_ACTIVE_JOBS": ("limits", "max_active_jobs", int),
    "MAX_WAIT_S": ("limits", "max_wait_s", float),
    "MAX_WAITS_PER_KEY": ("limits", "max_waits_per_key", int),
    "SHARE_RESULTS": ("results", "share", bool),
    "SHARE_RESULTS_ACROSS_KEYS": ("results", "share_across_keys", bool),
    "WORKER_HEARTBEAT_INTERVAL_S": ("workers", "heartbeat_interval_s", float),
    "WORKER_HEARTBEAT_TTL_S": ("workers", "heartbeat_ttl_s", float),
    "SHARE_SETTLE_S": ("results", "settle_s", float),
    "EVENT_STORE_DIR": ("store", "dir", str),
    "EVENT_STORE_MAX_BYTES": ("store", "max_bytes", int),
    "WORKER_METRICS_PORT": ("workers", "metrics_port", int),
    "WORKER_METRICS_ADDR": ("workers", "metrics_addr", str),
    "UNIT_LEASE_S": ("workers", "unit_lease_s", float),
    "UNIT_MAX_ATTEMPTS": ("workers", "unit_max_attempts", int),
    "RECONCILE_INTERVAL_S": ("workers", "reconcile_interval_s", float),
    "METRICS_ENABLED": ("metrics", "enabled", bool),
    "PROMETHEUS_MULTIPROC_DIR": ("metrics", "multiproc_dir", str),
    "LOG_FORMAT": ("logging", "format", str),
    "LOG_LEVEL": ("logging", "level", str),
    "HOST": ("stack", "host", str),
    "PORT": ("stack", "port", int),
    "FLOWER_PORT": ("stack", "flower_port", int),
    "FLOWER_BASIC_AUTH": ("stack", "flower_basic_auth", Secret),
    "SESSIONIZER_VAR_DIR": ("stack", "var_dir", str),
    "WEBHOOK_ALLOW_PRIVATE": ("webhooks", "allow_private", bool),
    "WEBHOOK_RETRY_SCHEDULE_S": ("webhooks", "retry_schedule_s", str),
    "WEBHOOK_TIMEOUT_S": ("webhooks", "timeout_s", float),
    "WEBHOOK_POLL_INTERVAL_S": ("webhooks", "poll_interval_s", float),
    "WEBHOOK_SECRET": ("webhooks", "secret", Secret),
    "WEBHOOK_SECRETS": ("webhooks", "secrets", Secret),
}
_SECTION_TYPES = {
    "redis": RedisSettings,
    "jobs": JobsSettings,
    "source": SourceSettings,
    "elasticsearch": ElasticsearchSettings,
    "celery": CelerySettings,
    "auth": AuthSettings,
    "limits": LimitsSettings,
    "results": ResultsSettings,
    "store": StoreSettings,
    "workers": WorkersSettings,
    "metrics": MetricsSettings,
    "logging": LoggingSettings,
    "stack": StackSettings,
    "webhooks": WebhooksSettings,
}
# keys of config/credentials.yml (lower case, as in the environment otherwise)
_CREDENTIALS = {name.lower(): name for name, (_, _, kind) in ENVIRONMENT.items() if kind is Secret}


def _under_root(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


def _coerce(value: Any, kind: type) -> Any:
    if kind is Secret:
        return value if isinstance(value, Secret) or value is None else Secret(str(value))
    if isinstance(value, str):
        if kind is bool:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return kind(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _apply(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    by_section: dict[str, dict[str, Any]] = {}
    for name, value in overrides.items():
        section, key, kind = ENVIRONMENT[name]
        by_section.setdefault(section, {})[key] = _coerce(value, kind)
    return dataclasses.replace(
        settings,
        **{
            section: dataclasses.replace(getattr(settings, section), **values) for section, values in by_section.items()
        },
    )


def _from_file(data: Mapping[str, Mapping[str, Any]]) -> Settings:
    sections = {}
    for name, cls in _SECTION_TYPES.items():
        kinds = {key: kind for section, key, kind in ENVIRONMENT.values() if section == name}
        given = data.get(name, {})
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"config/defaults.toml [{name}]: unknown setting(s) {', '.join(sorted(unknown))}")
        sections[name] = cls(**{k: _coerce(v, kinds.get(k, type(v))) for k, v in given.items()})
    return Settings(**sections)


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings: the defaults file, then ``environ`` (``os.environ`` when not given), then the
    credentials file for secrets the environment does not set, then ``overrides`` (keyed like
    the environment: ``{"REDIS_URL": ..., "MAX_WAIT_S": 1}``)."""
    env = dict(os.environ if environ is None else environ)
    config_dir = Path(env.get("SESSIONIZER_CONFIG_DIR") or ROOT / "config")
    with open(config_dir / "defaults.toml", "rb") as fh:
        settings = _from_file(tomllib.load(fh))
    given = {name: env[name] for name in ENVIRONMENT if env.get(name)}
    cred_file = Path(env.get("SESSIONIZER_CREDENTIALS") or config_dir / "credentials.yml")
    if cred_file.is_file():
        import yaml  # only where a credentials file exists

        loaded = yaml.safe_load(cred_file.read_text()) or {}
        for key, value in loaded.items():
            name = _CREDENTIALS.get(str(key).lower())
            if name and value is not None and name not in given:
                given[name] = str(value)
    settings = _apply(settings, given)
    return _apply(settings, overrides) if overrides else settings


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment, for the processes it starts (``make demo``/``make up``, tests)."""
    return {**os.environ, **extra}


def export(name: str, value: str) -> None:
    """Set ``name`` for this process and the processes it starts, for a library that reads only
    the environment (prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``); later settings see it."""
    os.environ[name] = value
    get_settings.cache_clear()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
