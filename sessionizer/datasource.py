"""Which data a job reads, as a digest: a shared result is only ever reused for the same data.

Standard library only: the API computes it at every shareable submit.

What the identity covers:

* the source kind (``file`` or ``elasticsearch``) and the four field names (timestamp, user,
  screen, instance);
* files: the event files as the event store versions them (:func:`file_set_version`): each
  event file's resolved path, size and modification time in nanoseconds. Rewriting, touching,
  adding or removing a file, or pointing ``EVENTS_PATH`` elsewhere gives another identity;
* Elasticsearch: the configured URL, normalised (scheme, host and port lowercased, default port
  made explicit, credentials and trailing slash dropped), and the index (or alias, or pattern).
  The URL rather than the cluster's ``cluster_uuid`` (``GET /``): the API then needs neither a
  round trip to the cluster on the submit path nor the cluster's credentials, and it cannot be
  stalled by an unreachable cluster. The cost: a different cluster moved behind the same URL is
  taken for the same data; point the URL at the new cluster's own address, or submit with
  ``Cache-Control: no-cache``. Data that changes inside the index is the settle rule's business
  (:func:`settled`), not the identity's.

A source that cannot be identified here (event files out of the API's reach) is ``None``: jobs
on it are never shared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .methods import read_margin_s
from .settings import Settings

EVENT_SUFFIXES = (".ndjson", ".jsonl", ".json", ".parquet")


class NoEventFiles(FileNotFoundError):
    """The events path does not exist, or holds no event file."""


def event_files(path: Path) -> list[Path]:
    """The event files at ``path`` (a file, or the NDJSON/Parquet files of a folder, sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in EVENT_SUFFIXES)
        if found:
            return found
        raise NoEventFiles(f"no .ndjson/.jsonl/.parquet event file under {path}")
    raise NoEventFiles(f"event path {path} does not exist")


def file_set_version(files: list[Path], user_field: str) -> str:
    """Digest of a set of event files: the user field, and each file's resolved path, size and
    modification time (ns). Any change to a file gives another version."""
    digest = hashlib.sha256(user_field.encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def normalised_url(url: str) -> str:
    """``scheme://host:port/path`` of a URL, without credentials: one cluster, one spelling."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    port = parts.port or (443 if scheme == "https" else 9200)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/')}"


def source_identity(settings: Settings) -> str | None:
    """Digest of the data jobs read with these settings; ``None`` when it cannot be known here."""
    src = settings.source
    where: dict[str, Any] = {
        "kind": settings.source_kind,
        "fields": [src.timestamp_field, src.user_field, src.screen_field, src.instance_field],
    }
    if settings.source_kind == "file":
        try:
            where["files"] = file_set_version(event_files(settings.events_path()), src.user_field)
        except OSError:
            return None
    elif settings.source_kind == "elasticsearch" and settings.elasticsearch.url:
        where["cluster"] = normalised_url(settings.elasticsearch.url)
        where["index"] = settings.elasticsearch.index
    else:
        return None
    return hashlib.sha256(json.dumps(where, sort_keys=True).encode()).hexdigest()


def settled(request: Mapping[str, Any], settle_s: float, now: datetime | None = None) -> bool:
    """Whether every event a job reads is at least ``settle_s`` old, so its result can be reused.

    A job reads beyond its ``end`` (the read margin: ``max_span_s`` plus the idle threshold), and
    sessions overlapping the range depend on those events too; so the latest event read, not
    ``end``, must lie ``settle_s`` in the past.
    """
    end = datetime.fromisoformat(request["end"])
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    read_end = end + timedelta(seconds=read_margin_s(request.get("method", "hdbscan"), request.get("params") or {}))
    return read_end + timedelta(seconds=settle_s) <= (now or datetime.now(UTC))
