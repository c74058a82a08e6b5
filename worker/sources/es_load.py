"""Load event files (NDJSON or Parquet) into an Elasticsearch index.

    python -m worker.sources.es_load PATH [PATH ...] [--index usage-events] [--url http://localhost:9200]

Creates the index with an explicit mapping if it is missing (the timestamp a ``date``, the user,
screen and instance ``keyword``, under the configured field names), then bulk-loads every
document and reports how many were indexed and how many Elasticsearch refused (with the first
reasons). Exit status 1 if more documents were refused than ``--max-refused`` (0) allows.
Credentials come from the same settings as the worker (``ELASTICSEARCH_API_KEY`` or
``ELASTICSEARCH_USERNAME``/``ELASTICSEARCH_PASSWORD``).

NDJSON lines are sent as they are (no decode/encode round trip), so what is loaded is exactly
what the file holds; Parquet rows are encoded with orjson, timestamps as epoch milliseconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import elastic_transport
import orjson
from elasticsearch import ApiError, Elasticsearch, helpers

from . import files
from .base import PermanentSourceError
from .documents import DEFAULT_NAMES, FieldNames

log = logging.getLogger(__name__)


@dataclass
class BulkResult:
    indexed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # the first few refusals
    seconds: float = 0.0

    MAX_ERRORS = 10


def mapping(names: FieldNames = DEFAULT_NAMES) -> dict[str, Any]:
    """The explicit mapping of the events index."""
    return {
        "properties": {
            names.timestamp: {"type": "date"},
            names.user: {"type": "keyword"},
            names.screen: {"type": "keyword"},
            names.instance: {"type": "keyword"},
        }
    }


def ensure_index(client: Elasticsearch, index: str, names: FieldNames = DEFAULT_NAMES) -> bool:
    """Create ``index`` with the events mapping unless it exists; True if it was created."""
    if client.indices.exists(index=index):
        return False
    try:
        client.indices.create(index=index, mappings=mapping(names))
    except ApiError as exc:
        if exc.meta.status == 400 and "resource_already_exists_exception" in str(exc.error):
            return False  # created meanwhile by someone else
        raise
    return True


def bulk_load(
    client: Elasticsearch,
    index: str,
    documents: Iterable[dict[str, Any] | bytes | str],
    *,
    chunk_size: int = 5000,
    max_retries: int = 5,
    initial_backoff_s: float = 1.0,
    on_chunk: Any = None,
) -> BulkResult:
    """Bulk-index documents (dicts, or their JSON as bytes/str) into ``index``.

    Refused documents are counted (not raised); 429s on items are retried with backoff by the
    helper. ``on_chunk(result)`` is called about every ``chunk_size`` documents.
    """
    result = BulkResult()
    started = time.monotonic()
    for ok, item in helpers.streaming_bulk(
        client,
        documents,
        index=index,
        chunk_size=chunk_size,
        raise_on_error=False,
        raise_on_exception=True,
        max_retries=max_retries,
        initial_backoff=initial_backoff_s,
        yield_ok=True,
    ):
        if ok:
            result.indexed += 1
        else:
            result.failed += 1
            if len(result.errors) < BulkResult.MAX_ERRORS:
                ((op, detail),) = item.items()
                result.errors.append({"status": detail.get("status"), "error": detail.get("error")})
        if on_chunk is not None and (result.indexed + result.failed) % chunk_size == 0:
            on_chunk(result)
    result.seconds = time.monotonic() - started
    return result


def event_files(paths: Iterable[Path]) -> list[Path]:
    """The NDJSON/Parquet files at these paths (files, or folders of them), as the file source sees them."""
    out: list[Path] = []
    for path in paths:
        try:
            out += files.event_files(path)
        except PermanentSourceError as exc:
            raise FileNotFoundError(str(exc)) from None
    return out


def main(argv: list[str] | None = None) -> int:
    from sessionizer.settings import get_settings

    settings = get_settings()
    es_cfg = settings.elasticsearch
    parser = argparse.ArgumentParser(prog="python -m worker.sources.es_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="NDJSON/Parquet files or folders of them")
    parser.add_argument("--index", default=es_cfg.index or "usage-events")
    parser.add_argument("--url", default=es_cfg.url or "http://localhost:9200")
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument("--no-create", action="store_true", help="do not create the index if it is missing")
    parser.add_argument(
        "--max-refused",
        type=int,
        default=0,
        metavar="N",
        help="exit 0 when at most N documents are refused (data known to hold some bad ones)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from .es_client import client_from_settings

    names = FieldNames.from_settings(settings.source)
    # bulk requests take longer than searches: at least a minute each
    es_cfg = dataclasses.replace(es_cfg, request_timeout_s=max(60.0, es_cfg.request_timeout_s))
    client = client_from_settings(es_cfg, url=args.url)
    try:
        paths = event_files(args.paths)
        if not args.no_create and ensure_index(client, args.index, names):
            print(f"created index [{args.index}] with the events mapping")
        total = BulkResult()
        for path in paths:
            res = bulk_load(client, args.index, files.document_lines(path), chunk_size=args.chunk_size)
            print(f"{path}: {res.indexed} indexed, {res.failed} refused in {res.seconds:.1f}s")
            total.indexed += res.indexed
            total.failed += res.failed
            total.errors += res.errors[: BulkResult.MAX_ERRORS - len(total.errors)]
        client.indices.refresh(index=args.index)
        print(f"total: {total.indexed} indexed, {total.failed} refused into [{args.index}]")
        for err in total.errors:
            print(f"  refused: HTTP {err['status']} {orjson.dumps(err['error']).decode()[:300]}")
        return 1 if total.failed > args.max_refused else 0
    except (ApiError, elastic_transport.TransportError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
