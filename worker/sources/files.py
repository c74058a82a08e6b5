"""Event files: NDJSON or Parquet, one file or a folder of them (the embedded default source).

A job is split into units of a few users each, and every unit would otherwise read every file
in full. So the first unit to touch a given set of files partitions their documents once into
buckets by user (``<bucket>.ndjson``, the raw JSON line kept as it was, so the document rules
apply unchanged); every later unit reads only its users' buckets. A partition is named by what it
covers (the files' resolved paths, sizes and modification times): a changed file gets a new
partition, and the old one is removed once nobody reads it (``partitions.py`` has the rule).
Concurrent workers wait on the partition's lock rather than partition twice.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from sessionizer import datasource
from sessionizer.settings import Settings

from .base import OnProgress, PermanentSourceError, ShouldStop, Stopped
from .documents import EventAccumulator, FieldNames
from .partitions import PartitionCache, source_key

BUCKETS = 256
_BATCH = 10_000


def event_files(path: Path) -> list[Path]:
    """The event files at ``path`` (a file, or the NDJSON/Parquet files of a folder, sorted)."""
    try:
        return datasource.event_files(path)
    except datasource.NoEventFiles as exc:
        raise PermanentSourceError(str(exc), kind="no_event_files") from None


def bucket_of(user: str) -> int:
    return zlib.crc32(user.encode()) % BUCKETS


def _json_value(value: Any) -> Any:
    # Parquet timestamps become epoch milliseconds, the form the document rules accept.
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return value.isoformat()
    return value


def document_lines(path: Path) -> Iterator[bytes]:
    """Each document of one file as a JSON line."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # only for Parquet inputs

        for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
            for row in batch.to_pylist():
                yield orjson.dumps({k: _json_value(v) for k, v in row.items()})
        return
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


class FileSource:
    """Reads events from NDJSON/Parquet files through a per-user partition cache."""

    def __init__(self, path: Path, names: FieldNames = FieldNames(), cache_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.names = names
        self.cache_dir = Path(cache_dir) if cache_dir else self.path.parent / ".sessionizer-cache"

    def version(self) -> str:
        """What the current partition covers (:func:`sessionizer.datasource.file_set_version`)."""
        return datasource.file_set_version(event_files(self.path), self.names.user)

    @contextmanager
    def _partition(self) -> Iterator[Path]:
        """The partition of the files as they are now, held for reading until the block ends."""
        files = event_files(self.path)
        cache = PartitionCache(self.cache_dir, source_key(self.path, self.names.user))
        with cache.partition(datasource.file_set_version(files, self.names.user),
                             lambda tmp: self._write_partition(files, tmp)) as part:
            yield part

    def _write_partition(self, files: list[Path], tmp: Path) -> None:
        user_key = self.names.user
        buffers: dict[int, list[bytes]] = {}
        handles: dict[int, Any] = {}
        try:
            for f in files:
                for line in document_lines(f):
                    try:
                        user = orjson.loads(line).get(user_key)
                    except (orjson.JSONDecodeError, AttributeError):
                        continue  # not a JSON object: it belongs to no user
                    if type(user) is not str:
                        continue
                    b = bucket_of(user)
                    buf = buffers.setdefault(b, [])
                    buf.append(line)
                    if len(buf) >= 1000:
                        fh = handles.get(b) or handles.setdefault(b, open(tmp / f"{b}.ndjson", "ab"))
                        fh.write(b"\n".join(buf) + b"\n")
                        buf.clear()
            for b, buf in buffers.items():
                if buf:
                    fh = handles.get(b) or handles.setdefault(b, open(tmp / f"{b}.ndjson", "ab"))
                    fh.write(b"\n".join(buf) + b"\n")
        finally:
            for fh in handles.values():
                fh.close()

    def read_events(
        self,
        users: list[str],
        lo_ms: int,
        hi_ms: int,
        *,
        should_stop: ShouldStop | None = None,
        on_progress: OnProgress | None = None,
    ) -> EventAccumulator:
        acc = EventAccumulator(self.names, users=users, lo_ms=lo_ms, hi_ms=hi_ms)
        with self._partition() as part:
            for b in sorted({bucket_of(u) for u in users}):
                self._read_bucket(part / f"{b}.ndjson", acc, should_stop, on_progress)
        return acc

    @staticmethod
    def _read_bucket(bucket_file: Path, acc: EventAccumulator,
                     should_stop: ShouldStop | None, on_progress: OnProgress | None) -> None:
        if not bucket_file.exists():
            return  # no document of these users
        loads = orjson.loads
        with open(bucket_file, "rb") as fh:
            while True:
                if should_stop is not None and should_stop():
                    raise Stopped()
                lines = fh.readlines(4 << 20)
                if not lines:
                    break
                acc.add_many(map(loads, lines))
                if on_progress is not None:
                    on_progress(acc.scanned)


def from_settings(settings: Settings) -> FileSource:
    """The file source configured by ``[source]`` (``EVENTS_PATH``, ``EVENTS_CACHE_DIR``, field names)."""
    return FileSource(settings.events_path(), FieldNames.from_settings(settings.source), settings.events_cache_dir())
