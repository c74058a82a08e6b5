"""Event files: NDJSON or Parquet, one file or a folder of them (the embedded default source).

A job is split into units of a few users each, and every unit would otherwise read every file
in full. So the first unit to touch a given set of files partitions their documents once into
buckets by user (``<cache>/<digest>/<bucket>.ndjson``, the raw JSON line kept as it was, so the
document rules apply unchanged); every later unit reads only its users' buckets. The digest
covers the files' paths, sizes and modification times: a changed file gets a new partition.
Concurrent workers wait on a lock file rather than partition twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import zlib
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .base import OnProgress, PermanentSourceError, ShouldStop, Stopped
from .documents import EventAccumulator, FieldNames

BUCKETS = 256
_BATCH = 10_000
_SUFFIXES = (".ndjson", ".jsonl", ".json", ".parquet")


def event_files(path: Path) -> list[Path]:
    """The event files at ``path`` (a file, or the NDJSON/Parquet files of a folder, sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES)
        if found:
            return found
        raise PermanentSourceError(f"no .ndjson/.jsonl/.parquet event file under {path}", kind="no_event_files")
    raise PermanentSourceError(f"event path {path} does not exist", kind="no_event_files")


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

    def _partition(self) -> Path:
        files = event_files(self.path)
        digest = hashlib.sha256(self.names.user.encode())
        for f in files:
            st = f.stat()
            digest.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        target = self.cache_dir / digest.hexdigest()[:24]
        if (target / "DONE").exists():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir / f"{target.name}.lock", "wb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / "DONE").exists():
                self._write_partition(files, target)
        return target

    def _write_partition(self, files: list[Path], target: Path) -> None:
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
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
        (tmp / "DONE").touch()
        os.replace(tmp, target)

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
        part = self._partition()
        buckets = sorted({bucket_of(u) for u in users})
        loads = orjson.loads
        for b in buckets:
            bucket_file = part / f"{b}.ndjson"
            if not bucket_file.exists():
                continue
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
        return acc


def from_settings(settings: Any) -> FileSource:
    src = settings["source"]
    names = FieldNames(src["timestamp_field"], src["user_field"], src["screen_field"], src["instance_field"])
    cache = os.environ.get("EVENTS_CACHE_DIR") or None
    return FileSource(settings.events_path(), names, Path(cache) if cache else None)
