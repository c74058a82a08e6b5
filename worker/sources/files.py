"""Event files: NDJSON or Parquet, one file or a folder of them (the embedded default source).

Reading goes through the event store (``worker/eventstore/files.py``): the first job to touch a
file parses and checks its documents once, into per-user columns; every later unit reads only
its users' events from there. A changed file gets new segments, and the old ones are removed
once nobody reads them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Unpack

import orjson

from sessionizer import datasource
from sessionizer.settings import Settings

from ..eventstore.files import FileStore, json_value
from .accumulator import EventAccumulator
from .base import PermanentSourceError, ReadOptions
from .documents import DEFAULT_NAMES, FieldNames

_BATCH = 10_000


def event_files(path: Path) -> list[Path]:
    """The event files at ``path`` (a file, or the NDJSON/Parquet files of a folder, sorted)."""
    try:
        return datasource.event_files(path)
    except datasource.NoEventFiles as exc:
        raise PermanentSourceError(str(exc), kind="no_event_files") from None


def document_lines(path: Path) -> Iterator[bytes]:
    """Each document of one file as a JSON line (``es_load`` sends them to Elasticsearch)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # only for Parquet inputs

        for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
            for row in batch.to_pylist():
                yield orjson.dumps({k: json_value(v) for k, v in row.items()})
        return
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


class FileSource:
    """Reads events from NDJSON/Parquet files through the event store in ``store_dir``.

    ``store_dir`` defaults to ``.sessionizer-store`` beside the events; ``max_bytes`` (0: no
    bound) is ``EVENT_STORE_MAX_BYTES``, kept over the whole store folder.
    """

    def __init__(
        self, path: Path, names: FieldNames = DEFAULT_NAMES, store_dir: Path | None = None, max_bytes: int = 0
    ) -> None:
        self.path = Path(path)
        self.names = names
        self.store_dir = Path(store_dir) if store_dir else self.path.parent / ".sessionizer-store"
        self.store = FileStore(self.store_dir / "files", names, max_bytes=max_bytes, budget_root=self.store_dir)

    def version(self) -> str:
        """What the files are now (:func:`sessionizer.datasource.file_set_version`)."""
        return datasource.file_set_version(event_files(self.path), self.names.user)

    def read_events(self, users: list[str], lo_ms: int, hi_ms: int, **options: Unpack[ReadOptions]) -> EventAccumulator:
        # concurrent units start building at different pieces (spread by their users)
        start_at = zlib.crc32("\0".join(sorted(users)).encode())
        return self.store.read(event_files(self.path), users, lo_ms, hi_ms, start_at=start_at, **options)

    def counts(self, users: list[str], lo_ms: int, hi_ms: int) -> dict[str, int] | None:
        """Each user's stored event count (the whole files), or ``None`` before the store is built."""
        return self.store.counts(event_files(self.path), users)


def from_settings(settings: Settings) -> FileSource:
    """The file source configured by ``[source]`` and ``[store]`` (``EVENTS_PATH``, field names,
    ``EVENT_STORE_DIR``, ``EVENT_STORE_MAX_BYTES``)."""
    return FileSource(
        settings.events_path(),
        FieldNames.from_settings(settings.source),
        settings.event_store_dir(),
        settings.store.max_bytes,
    )
