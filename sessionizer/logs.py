"""Logs for the API and the workers: plain text, or one JSON object a line (``LOG_FORMAT=json``).

Each record carries the request id (``X-Request-ID``, taken from the request or made), the job id
and the unit where they are known: the API and the workers set them in context variables
(:func:`bind`) and a filter copies them onto every record. JSON comes from python-json-logger
(orjson inside): ``time``, ``level``, ``logger``, ``message``, then ``request_id``, ``job_id``,
``unit`` and any extra field.

No secret is written: the project never logs a key, a password or a header; as a second line of
defence every formatted line has URL credentials (``redis://:pw@host``) and the configured secret
values (the Redis password, the Elasticsearch API key or password) masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

CONTEXT_FIELDS = ("request_id", "job_id", "unit")
_context: dict[str, ContextVar[Any]] = {name: ContextVar(name, default=None) for name in CONTEXT_FIELDS}
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s/]+)@")
MASK = "***"


@contextmanager
def bind(**values: Any) -> Iterator[None]:
    """Log records made inside carry these context fields (``request_id``, ``job_id``, ``unit``)."""
    tokens = [(_context[name], _context[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_context(**values: Any) -> None:
    """Set context fields for the rest of this context (a request, a task); see :func:`bind`."""
    for name, value in values.items():
        _context[name].set(value)


def clear_context() -> None:
    for var in _context.values():
        var.set(None)


def context() -> dict[str, Any]:
    return {name: var.get() for name, var in _context.items() if var.get() is not None}


class ContextFilter(logging.Filter):
    """Copies the context fields onto each record (a field the call site gave wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context()
        for name, value in ctx.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        record.context = "".join(f" {k}={v}" for k, v in ctx.items())
        return True


class Redactor:
    """Masks URL credentials and known secret values in a formatted line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        line = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", line)
        for secret in self.secrets:
            line = line.replace(secret, MASK)
        return line


class RedactingFormatter(logging.Formatter):
    """Any formatter's output, redacted."""

    def __init__(self, inner: logging.Formatter, redact: Redactor) -> None:
        super().__init__()
        self.inner, self.redact = inner, redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(self.inner.format(record))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


def make_formatter(fmt: str, secrets: Iterable[str] = ()) -> logging.Formatter:
    if fmt == "json":
        from pythonjsonlogger.orjson import OrjsonFormatter

        inner: logging.Formatter = OrjsonFormatter(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            reserved_attrs=[*_RESERVED, "context"],
        )
    else:
        inner = logging.Formatter(TEXT_FORMAT, defaults={"context": ""})
    return RedactingFormatter(inner, Redactor(secrets))


def secrets_of(settings: Any) -> list[str]:
    """The secret values a deployment is configured with: the Redis password (in ``REDIS_URL``),
    the Elasticsearch API key, user name and password, Flower's basic auth."""
    values = []
    try:
        values.append(urlsplit(settings.redis.url).password or "")
    except ValueError:
        pass
    for secret in (settings.elasticsearch.api_key, settings.elasticsearch.password, settings.stack.flower_basic_auth):
        if secret is not None:
            values.append(secret.value)
    return [v for v in values if v]


def configure(fmt: str = "text", level: str = "INFO", secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Root logging: one handler on stderr (or ``stream``), the context filter, redaction; Python
    warnings go through it too, so they are lines of the same format."""
    if fmt not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT must be text or json, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(make_formatter(fmt, secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)


def configure_from(settings: Any, level: str | None = None) -> None:
    """:func:`configure` as the settings say (``LOG_FORMAT``, ``LOG_LEVEL``)."""
    configure(settings.logging.format, level or settings.logging.level, secrets_of(settings))


def restyle(*loggers: logging.Logger, settings: Any) -> None:
    """Give loggers that keep handlers of their own (gunicorn's) the same format, context and masking."""
    formatter = make_formatter(settings.logging.format, secrets_of(settings))
    for logger in loggers:
        for handler in logger.handlers:
            handler.setFormatter(formatter)
            handler.addFilter(ContextFilter())


# LogRecord attributes that are not fields of a line (python-json-logger's list, plus ours)
_RESERVED = [
    "args",
    "asctime",
    "created",
    "exc_info",
    "exc_text",
    "filename",
    "funcName",
    "levelname",
    "levelno",
    "lineno",
    "module",
    "msecs",
    "message",
    "msg",
    "name",
    "pathname",
    "process",
    "processName",
    "relativeCreated",
    "stack_info",
    "thread",
    "threadName",
    "taskName",
]
