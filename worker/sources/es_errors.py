"""What an Elasticsearch failure means: worth another try (a reason to log), or a
:class:`PermanentSourceError` of a stable ``kind`` (``index_not_found``, ``unauthorized``, ...)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import elastic_transport
import urllib3
from elasticsearch import ApiError, UnsupportedProductError

from .base import PermanentSourceError, TransientSourceError

TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
# what transient_reason judges; anything else raised during a request is not an Elasticsearch failure
JUDGED = (
    TransientSourceError,
    ApiError,
    elastic_transport.ConnectionError,
    elastic_transport.ConnectionTimeout,
    elastic_transport.SerializationError,
)
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


class PitExpired(Exception):
    """The point in time is gone (404 search_context_missing_exception): start over."""


def transient_reason(exc: Exception, what: str, index: str) -> str:
    """Why ``exc`` (one of :data:`JUDGED`), raised trying to ``what`` ``index``, is worth another
    try; raises :class:`PermanentSourceError` (or :class:`PitExpired`) when it is not."""
    if isinstance(exc, TransientSourceError):
        return str(exc)
    if isinstance(exc, UnsupportedProductError):  # an ApiError: judged before the others
        raise PermanentSourceError(
            "the server at the configured Elasticsearch URL is not Elasticsearch (no X-Elastic-Product header)",
            kind="not_elasticsearch",
        ) from None
    if isinstance(exc, ApiError):
        return _api_error_reason(exc, what, index)
    if isinstance(exc, elastic_transport.TlsError):  # a ConnectionError: judged before them
        raise PermanentSourceError(
            f"TLS failure talking to Elasticsearch ({type(exc).__name__}); check the URL, "
            "certificates and verify_certs",
            kind="tls",
        ) from None
    if isinstance(exc, (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout)):
        _raise_if_not_network(exc)
    # a connection error, a timeout, or a garbled answer: worth another try
    return f"{type(exc).__name__}: {short(exc)}"


def _api_error_reason(exc: ApiError, what: str, index: str) -> str:
    status = exc.meta.status
    types = error_types(exc.body)
    if status in TRANSIENT_STATUSES:
        return f"HTTP {status} {types[0] if types else ''}".strip()
    if "search_context_missing_exception" in types:
        raise PitExpired()
    if status == 404 and ("index_not_found_exception" in types or not types):
        raise PermanentSourceError(f"index [{index}] not found", kind="index_not_found") from None
    if status == 401:
        raise PermanentSourceError(
            "Elasticsearch refused the credentials (HTTP 401); check ELASTICSEARCH_API_KEY or "
            "ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD",
            kind="unauthorized",
        ) from None
    if status == 403:
        raise PermanentSourceError(
            f"the Elasticsearch user may not read index [{index}] (HTTP 403)", kind="forbidden"
        ) from None
    if status == 400:
        raise PermanentSourceError(
            f"Elasticsearch rejected the request to {what} index [{index}] (HTTP 400 "
            f"{'/'.join(types[:2])}): {_reason(exc.body)}",
            kind="bad_request",
        ) from None
    raise PermanentSourceError(
        f"Elasticsearch failed to {what} index [{index}] (HTTP {status} {'/'.join(types[:2])}): {_reason(exc.body)}",
        kind="elasticsearch_error",
    ) from None


def _walk_errors(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "type" in node and isinstance(node.get("type"), str):
            yield node
        for key in ("root_cause", "caused_by", "failed_shards", "reason"):
            child = node.get(key)
            if isinstance(child, list):
                for item in child:
                    yield from _walk_errors(item)
            elif isinstance(child, dict):
                yield from _walk_errors(child)


def error_types(body: Any) -> list[str]:
    """Every error ``type`` in an ES error body: the outer one first, then causes."""
    if not isinstance(body, dict):
        return []
    err = body.get("error")
    if isinstance(err, str):
        return [err]
    out: list[str] = []
    for node in _walk_errors(err):
        if node["type"] not in out:
            out.append(node["type"])
    return out


def _reason(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        roots = err.get("root_cause") or []
        if roots and isinstance(roots[0], dict) and roots[0].get("reason"):
            return str(roots[0]["reason"])[:300]
        return str(err.get("reason", ""))[:300]
    return str(body)[:300]


def _raise_if_not_network(exc: Exception) -> None:
    """Re-raise what the transport wrapped if it is no network failure.

    The transport turns *any* exception raised during a request into a ``ConnectionError``,
    including ones raised into the thread from outside: Celery's soft time limit
    (``SoftTimeLimitExceeded``), a ``KeyboardInterrupt``-like signal handler's exception. Retried
    as a connection error, the soft time limit would be swallowed and the unit would run on until
    the hard limit kills it. So only urllib3's own errors and OS-level errors are retried.
    """
    causes = getattr(exc, "errors", ()) or ()
    cause = causes[0] if causes else exc.__cause__  # the transport sets one or the other
    if cause is not None and not isinstance(cause, _NETWORK_ERRORS):
        raise cause


def short(exc: Exception) -> str:
    """``exc`` in at most 300 characters, naming what urllib3 saw under the transport's words."""
    text = str(exc)
    causes = getattr(exc, "errors", ()) or ()
    if causes:  # the transport's message is generic: name what urllib3 actually saw
        text += f" ({type(causes[0]).__name__}: {causes[0]})"
    return text if len(text) <= 300 else text[:300] + "..."
