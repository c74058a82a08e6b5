"""The event store of the file source: every event file parsed once, into per-user columns.

An event file is cut into pieces (NDJSON: ``CHUNK_BYTES`` of lines each; Parquet: the whole
file), and each piece becomes one segment (``segment.py``): its documents checked by the event
rules once, grouped by user, sorted by time. A unit then reads exactly its users' slices of every
segment: no other user's events are read, parsed or counted.

Layout, under ``<EVENT_STORE_DIR>/files/``:

* ``<path>-<version>-<piece>.seg``: a finished segment. ``<path>`` digests the file's resolved
  path, the four field names and the store's format; ``<version>`` the file's size and
  modification time (ns) and the piece size: a file that changes gets new segments.
* ``<path>-<version>-<piece>.lock``: the segment's lock. A reader holds it shared while it
  reads the segment; its writer holds it exclusive while it writes (so two units that need the
  same missing piece build it once: the second waits, then reads). Every read touches it: its
  modification time is the segment's last use.
* ``*.seg.tmp<pid>``: a segment being written, renamed into place when complete.

Building is shared out: each unit first builds the missing pieces that nobody else is building,
starting at its own place in the list (so concurrent units of a cold job build different pieces
at the same time), then reads every piece, waiting for those that others are still building.

Removal: when nobody holds its lock, a segment is removed if it is another version of a file
just read (the file changed: it can never be read again) or if it belongs to another file and
has not been read for ``IDLE_S`` (7 days); and the least recently used segments go whenever the
store is over ``EVENT_STORE_MAX_BYTES`` (``budget.py``). A segment found truncated or corrupt
is discarded and built again from the file.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from ..sources.accumulator import EventAccumulator
from ..sources.base import OnProgress, ShouldStop, Stopped
from ..sources.documents import FieldNames
from ..sources.gcpause import gc_paused
from . import budget
from .locks import locked, same_file, try_exclusive
from .segment import CorruptSegment, Segment, UserColumns, write_segment

log = logging.getLogger(__name__)

FORMAT = "1"  # the store's layout and the event rules it applied; a change gives new segments
CHUNK_BYTES = 32 << 20
IDLE_S = 7 * 86_400
_BATCH = 10_000
_NAME = re.compile(r"^(?P<path>[0-9a-f]{16})-(?P<version>[0-9a-f]{24})-(?P<piece>\d{5})\.(seg|lock|seg\.tmp\d+)$")


@dataclass(frozen=True)
class Piece:
    """One segment's input: a whole file, or the lines starting in ``[start, end)`` of one."""

    file: Path
    start: int
    end: int
    name: str  # <path>-<version>-<piece>

    @property
    def path_key(self) -> str:
        return self.name[:16]


def pieces_of(files: list[Path], names: FieldNames, chunk_bytes: int = CHUNK_BYTES) -> list[Piece]:
    out = []
    fields = "\0".join(names.source_fields)
    for f in files:
        st = f.stat()
        path_key = hashlib.sha256(f"{f.resolve()}\0{fields}\0{FORMAT}".encode()).hexdigest()[:16]
        version = hashlib.sha256(f"{st.st_size}\0{st.st_mtime_ns}\0{chunk_bytes}".encode()).hexdigest()[:24]
        whole = f.suffix.lower() == ".parquet"
        count = 1 if whole else max(1, math.ceil(st.st_size / chunk_bytes))
        for i in range(count):
            start, end = (0, st.st_size) if whole else (i * chunk_bytes, min((i + 1) * chunk_bytes, st.st_size))
            out.append(Piece(f, start, end, f"{path_key}-{version}-{i:05d}"))
    return out


def json_value(value: Any) -> Any:
    # Parquet timestamps become epoch milliseconds, the form the document rules accept.
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _documents(piece: Piece) -> Iterator[list[Any]]:
    """The piece's documents, in batches; a line that is not JSON belongs to no user and is dropped."""
    if piece.file.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # only for Parquet inputs

        for batch in pq.ParquetFile(piece.file).iter_batches(batch_size=_BATCH):
            yield [{k: json_value(v) for k, v in row.items()} for row in batch.to_pylist()]
        return
    with open(piece.file, "rb") as fh:
        pos = piece.start
        if pos > 0:  # the line under way at `start` belongs to the previous piece
            fh.seek(pos - 1)
            fh.readline()
            pos = fh.tell()
        if pos >= piece.end:
            return
        data = fh.read(piece.end - pos)
        if not data.endswith(b"\n"):
            data += fh.readline()  # the last line that starts in this piece, whole
    # a blank or broken line fails its batch's fast parse and is dropped by the slow one
    lines = data.split(b"\n")
    del data
    if lines and not lines[-1]:
        lines.pop()
    loads = orjson.loads
    for i in range(0, len(lines), _BATCH):
        batch = lines[i : i + _BATCH]
        try:
            yield [loads(line) for line in batch]
        except orjson.JSONDecodeError:
            docs = []
            for line in batch:
                try:
                    docs.append(loads(line))
                except orjson.JSONDecodeError:
                    pass  # not JSON (or blank): nobody's document
            yield docs


@dataclass
class Built:
    """A segment's content in memory: every user's columns and the vocabularies they code into."""

    users: dict[str, UserColumns]
    screens: list[str]
    instances: list[str]


def user_columns(acc: EventAccumulator, user: str) -> UserColumns:
    """One user's events and refusals, taken out of an accumulator (which forgets them)."""
    ev = acc.pop_user(user)
    refused = acc.rejected.pop(user, [])
    return UserColumns(ev.t_ms, ev.screen, ev.instance, len(refused), [r for _, r in refused[:5]])


def build_piece(piece: Piece, names: FieldNames, should_stop: ShouldStop | None = None) -> Built:
    """Parse and check a piece's documents, grouped by user (every user)."""
    acc = EventAccumulator(names)
    for docs in _documents(piece):
        if should_stop is not None and should_stop():
            raise Stopped()
        with gc_paused():  # a batch's dicts hold no cycle (sources/gcpause.py)
            acc.add_many(docs)
        del docs
    users = sorted(set(acc.user_names) | set(acc.rejected))
    screens, instances = acc.vocabulary()
    return Built({u: user_columns(acc, u) for u in users}, screens, instances)


class FileStore:
    """The file source's event store in ``root`` (``<EVENT_STORE_DIR>/files``)."""

    def __init__(
        self,
        root: Path,
        names: FieldNames,
        *,
        max_bytes: int,
        budget_root: Path | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.root = Path(root)
        self.names = names
        self.max_bytes = max_bytes
        self.budget_root = Path(budget_root) if budget_root else self.root
        self.chunk_bytes = chunk_bytes

    def _paths(self, piece: Piece) -> tuple[Path, Path]:
        return self.root / f"{piece.name}.seg", self.root / f"{piece.name}.lock"

    def _write(self, piece: Piece, built: Built) -> None:
        """Write a built piece (the caller holds its lock exclusively); a failure is logged, not raised."""
        seg, _ = self._paths(piece)
        for stale in self.root.glob(f"{piece.name}.seg.tmp*"):  # a crashed writer's
            stale.unlink(missing_ok=True)
        try:
            write_segment(
                seg,
                sorted(built.users.items()),
                built.screens,
                built.instances,
                {
                    "file": str(piece.file),
                    "start": piece.start,
                    "end": piece.end,
                    "built_at_ms": int(time.time() * 1000),
                },
            )
        except OSError as exc:
            log.warning(
                "event store: could not write a segment of %s (%s); this job goes on from the file itself",
                piece.file.name,
                exc,
            )

    def _build(self, piece: Piece, should_stop: ShouldStop | None) -> Built:
        started = time.perf_counter()
        built = build_piece(piece, self.names, should_stop)
        self._write(piece, built)
        log.info(
            "event store: built %s (%s, bytes %d..%d) in %.2f s",
            piece.name,
            piece.file.name,
            piece.start,
            piece.end,
            time.perf_counter() - started,
        )
        return built

    def _read_piece(
        self, piece: Piece, users: list[str], should_stop: ShouldStop | None, since_ms: int | None = None
    ) -> tuple[dict[str, UserColumns], list[str], list[str], bool]:
        """The users' columns in one piece: ``(columns, screens, instances, fresh)``, fresh when
        it was built here, or built since ``since_ms``."""
        seg_path, lock = self._paths(piece)
        while True:
            with locked(lock, fcntl.LOCK_SH) as fh:
                bad = None  # the inode of the segment found corrupt
                try:
                    with Segment(seg_path) as seg:
                        cols = {u: c for u in users if (c := seg.read(u)) is not None}
                        os.utime(lock)  # its last use
                        built_at = seg.meta.get("built_at_ms")
                        fresh = since_ms is not None and isinstance(built_at, int) and built_at >= since_ms
                        return cols, seg.screens, seg.instances, fresh
                except CorruptSegment as exc:
                    log.warning("event store: %s; discarded, built again from the file", exc)
                    bad = os.stat(seg_path).st_ino
                except FileNotFoundError:
                    pass
                # missing or corrupt: become its writer (readers of it wait)
                fcntl.flock(fh, fcntl.LOCK_EX)
                if not same_file(lock, fh):
                    continue  # removed while we converted: start over on the new lock file
                try:
                    now = os.stat(seg_path).st_ino
                except FileNotFoundError:
                    now = None
                if now is not None and now != bad:
                    continue  # built (or mended) by another unit meanwhile: read it shared
                seg_path.unlink(missing_ok=True)
                built = self._build(piece, should_stop)
                return {u: built.users[u] for u in users if u in built.users}, built.screens, built.instances, True

    def read(
        self,
        files: list[Path],
        users: list[str],
        lo_ms: int,
        hi_ms: int,
        *,
        should_stop: ShouldStop | None = None,
        on_progress: OnProgress | None = None,
        start_at: int = 0,
        since_ms: int | None = None,
    ) -> EventAccumulator:
        """Every event of ``users`` with ``lo_ms <= t <= hi_ms``, out of the store (built first
        where missing). ``start_at`` spreads concurrent builders over the pieces. ``from_source``
        counts the events of pieces built during this read, or since ``since_ms`` (a job's start:
        the pieces its other units built)."""
        self.root.mkdir(parents=True, exist_ok=True)
        pieces = pieces_of(files, self.names, self.chunk_bytes)
        wanted = sorted(set(users))
        acc = EventAccumulator(self.names, users=wanted, lo_ms=lo_ms, hi_ms=hi_ms)
        stop = should_stop or (lambda: False)
        mine: dict[str, tuple[dict[str, UserColumns], list[str], list[str]]] = {}
        # pieces missing when this read began were read from the file during it (by this unit, or
        # by another unit of a cold job while this one waited): their events count as from the source
        fresh: set[str] = set()
        # 1. build the missing pieces nobody else is building, from this unit's own place on
        k = start_at % len(pieces) if pieces else 0
        for piece in pieces[k:] + pieces[:k]:
            seg_path, lock = self._paths(piece)
            if seg_path.exists():
                continue
            fresh.add(piece.name)
            if stop():
                raise Stopped()
            lock.touch(exist_ok=True)
            fh = try_exclusive(lock)
            if fh is None:
                continue  # someone builds it: read it in step 2
            with fh:
                if seg_path.exists():
                    continue
                built = self._build(piece, should_stop)
                mine[piece.name] = (
                    {u: built.users[u] for u in wanted if u in built.users},
                    built.screens,
                    built.instances,
                )
        # 2. read every piece, in file order
        kept = from_source = 0
        for piece in pieces:
            if stop():
                raise Stopped()
            if piece.name in mine:
                cols, screens, instances = mine.pop(piece.name)
                here = True
            else:
                cols, screens, instances, here = self._read_piece(piece, wanted, should_stop, since_ms)
                here = here or piece.name in fresh
            for user, c in cols.items():
                n = acc.add_columns(user, c.t, c.screen, c.instance, screens, instances)
                kept += n
                acc.invalid += c.invalid
                acc.error_samples.extend(c.samples[: acc.MAX_ERROR_SAMPLES - len(acc.error_samples)])
                if here:
                    from_source += n + c.invalid
            acc.scanned = kept + acc.invalid
            if on_progress is not None:
                on_progress(acc.scanned)
        acc.from_source = from_source
        self.prune({p.path_key for p in pieces}, {p.name for p in pieces})
        if self.max_bytes:
            budget.enforce_soon(self.budget_root, self.max_bytes)
        return acc

    def counts(self, files: list[Path], users: list[str]) -> dict[str, int] | None:
        """Each user's stored event count over every piece, or ``None`` if a piece is not built."""
        totals = dict.fromkeys(users, 0)
        for piece in pieces_of(files, self.names, self.chunk_bytes):
            seg_path, _ = self._paths(piece)
            try:
                with Segment(seg_path) as seg:
                    for u in users:
                        totals[u] += seg.count(u)
            except (FileNotFoundError, CorruptSegment):
                return None
        return totals

    def prune(self, paths: set[str], keep: set[str]) -> list[str]:
        """Remove, when nobody holds them, the other versions of ``paths`` and other files' segments
        idle for ``IDLE_S``; return the names removed."""
        removed: list[str] = []
        now = time.time()
        names: dict[str, set[str]] = {}
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return removed
        for entry in entries:
            m = _NAME.match(entry)
            if m:
                names.setdefault(entry.split(".", 1)[0], set()).add(entry)
        for name in sorted(names):
            if name in keep:
                continue
            lock = self.root / f"{name}.lock"
            if name[:16] not in paths:
                try:
                    idle = now - lock.stat().st_mtime
                except FileNotFoundError:
                    idle = IDLE_S
                if idle < IDLE_S:
                    continue
            lock.touch(exist_ok=True)
            fh = try_exclusive(lock)
            if fh is None:
                continue  # being read or written
            with fh:
                for entry in names[name]:
                    if not entry.endswith(".lock"):
                        (self.root / entry).unlink(missing_ok=True)
                lock.unlink()  # last, while locked: a waiting reader then locks a new file
            removed.append(name)
        return removed


__all__ = ["FileStore", "Piece", "build_piece", "json_value", "pieces_of", "user_columns"]
