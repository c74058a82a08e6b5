"""Where events come from: Elasticsearch or NDJSON/Parquet files."""

from __future__ import annotations

from sessionizer.settings import Settings

from .accumulator import EventAccumulator, UserEvents
from .base import EventSource, PermanentSourceError, ReadOptions, SourceError, Stopped, TransientSourceError
from .documents import FieldNames


def source_from_settings(settings: Settings) -> EventSource:
    """The configured source: ``EVENT_SOURCE``, else Elasticsearch when ``ELASTICSEARCH_URL`` is set."""
    kind = settings.source_kind
    if kind == "elasticsearch":
        from sessionizer.datasource import source_identity

        from . import elasticsearch  # the client is only imported where it is used
        from .es_store import StoredElasticsearchSource

        plain = elasticsearch.from_settings(settings)
        identity = source_identity(settings)
        if identity is None:
            return plain
        return StoredElasticsearchSource(
            plain,
            settings.event_store_dir(),
            identity,
            settle_s=settings.results.settle_s,
            max_bytes=settings.store.max_bytes,
        )
    if kind == "file":
        from . import files

        return files.from_settings(settings)
    raise PermanentSourceError(f"unknown EVENT_SOURCE {kind!r} (expected 'elasticsearch' or 'file')", kind="config")


__all__ = [
    "EventAccumulator",
    "EventSource",
    "FieldNames",
    "PermanentSourceError",
    "ReadOptions",
    "SourceError",
    "Stopped",
    "TransientSourceError",
    "UserEvents",
    "source_from_settings",
]
