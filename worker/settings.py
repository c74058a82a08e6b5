"""Configuration: ``config/defaults.toml``, then the environment, then ``config/credentials.yml``.

This module is imported by the API process too, so it stays light: standard library only
(PyYAML is imported lazily, and only when a credentials file exists).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(os.environ.get("SESSIONIZER_CONFIG_DIR", ROOT / "config"))

# environment variable -> (section, key, type)
_ENV: dict[str, tuple[str, str, type]] = {
    "REDIS_URL": ("redis", "url", str),
    "JOB_TTL_S": ("jobs", "ttl_s", int),
    "MAX_RANGE_DAYS": ("jobs", "max_range_days", int),
    "MAX_USERS": ("jobs", "max_users", int),
    "RETRY_AFTER_S": ("jobs", "retry_after_s", int),
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
    "JOB_DEADLINE_S": ("jobs", "deadline_s", int),
    "CELERY_VISIBILITY_TIMEOUT_S": ("celery", "visibility_timeout_s", int),
    "CELERY_RESTORE_INTERVAL_S": ("celery", "restore_interval_s", int),
    "CELERY_SOFT_TIME_LIMIT_S": ("celery", "task_soft_time_limit_s", int),
    "CELERY_TIME_LIMIT_S": ("celery", "task_time_limit_s", int),
    "AUTH_REQUIRED": ("auth", "required", bool),
    "API_KEYS": ("auth", "keys", str),
    "RATE_LIMIT_PER_S": ("limits", "rate_per_s", float),
    "RATE_LIMIT_BURST": ("limits", "rate_burst", int),
    "MAX_ACTIVE_JOBS": ("limits", "max_active_jobs", int),
    "MAX_WAIT_S": ("limits", "max_wait_s", float),
    "MAX_WAITS_PER_KEY": ("limits", "max_waits_per_key", int),
    "SHARE_RESULTS": ("results", "share", bool),
}
_SECRETS = ("elasticsearch_api_key", "elasticsearch_username", "elasticsearch_password")


def _coerce(value: str, kind: type) -> Any:
    if kind is bool:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return kind(value)


@dataclass(frozen=True)
class Secret:
    """A credential that never prints itself (logs, reprs, error messages)."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    data: dict[str, dict[str, Any]]
    secrets: dict[str, Secret]

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]

    @property
    def source_kind(self) -> str:
        kind = self.data["source"]["kind"]
        if kind:
            return kind
        return "elasticsearch" if self.data["elasticsearch"]["url"] else "file"

    def events_path(self) -> Path:
        path = Path(self.data["source"]["events_path"])
        return path if path.is_absolute() else ROOT / path

    def method_defaults(self, method: str) -> dict[str, Any]:
        return dict(self.data["methods"].get(method, {}))


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build the settings from the defaults file, the environment and the credentials file."""
    environ = dict(os.environ if environ is None else environ)
    with open(CONFIG_DIR / "defaults.toml", "rb") as fh:
        data: dict[str, dict[str, Any]] = tomllib.load(fh)
    for name, (section, key, kind) in _ENV.items():
        if environ.get(name):
            data.setdefault(section, {})[key] = _coerce(environ[name], kind)

    raw: dict[str, str] = {}
    cred_file = Path(environ.get("SESSIONIZER_CREDENTIALS", CONFIG_DIR / "credentials.yml"))
    if cred_file.is_file():
        import yaml  # only where a credentials file exists

        loaded = yaml.safe_load(cred_file.read_text()) or {}
        raw.update({str(k).lower(): str(v) for k, v in loaded.items() if v is not None})
    for name in _SECRETS:
        if environ.get(name.upper()):
            raw[name] = environ[name.upper()]
    secrets = {k: Secret(v) for k, v in raw.items() if k in _SECRETS}
    return Settings(data=data, secrets=secrets)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
