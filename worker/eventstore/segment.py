"""One store file: the events of one or more users, columnar, self-checking.

Layout (little endian)::

    b"SZEVSEG1"                      magic and format version
    u64  header length
    header                           JSON (orjson): n, users, screens, instances, meta
    u32  crc32 of the header
    zero padding to a multiple of 8
    t         int64[n]               epoch milliseconds, each user's slice sorted (stable)
    screen    int32[n]               codes into ``screens``
    instance  int32[n]               codes into ``instances``

``users`` maps a user to ``[offset, count, crc32, invalid, samples]``: where the user's slice
starts in each column, its length, the crc32 of its three slices' bytes (chained), and the
user's documents that broke the event rules (a count and up to five marshmallow error dicts).

Why raw NumPy columns rather than Arrow IPC or Parquet: a unit reads a few users' slices out of
a file that holds many; here that is three ``pread`` calls per user and no decoding at all
(``np.frombuffer``), with a checksum of exactly the bytes read. Parquet would decompress whole
column chunks; Arrow IPC would do the same zero-copy slicing but has no checksum, so a bit flip
would be served. ``benchmarks/bench_job.py`` measures the result against the NDJSON it replaces.

A file is written under a temporary name and renamed into place (atomic on POSIX), so a crashed
writer leaves no file under the real name; one that is truncated or corrupted after all (a full
disk, a power loss before the data reached the disk, a bit flip, a hand edit) fails the size
check, the header's crc or the slice's crc, and :class:`CorruptSegment` is raised: the caller
discards it and reads the source again.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

MAGIC = b"SZEVSEG1"
_HEAD = struct.Struct("<8sQ")
_CRC = struct.Struct("<I")
MAX_SAMPLES = 5


class CorruptSegment(Exception):
    """A store file that is truncated, garbled, or not one at all: never served."""


@dataclass
class UserColumns:
    """One user's events in a segment's vocabulary, sorted by time."""

    t: np.ndarray  # int64 (n,)
    screen: np.ndarray  # int32 (n,)
    instance: np.ndarray  # int32 (n,)
    invalid: int = 0
    samples: list[Any] = field(default_factory=list)


def _slice_crc(t: np.ndarray, screen: np.ndarray, instance: np.ndarray) -> int:
    return zlib.crc32(instance.tobytes(), zlib.crc32(screen.tobytes(), zlib.crc32(t.tobytes())))


def write_segment(
    path: Path,
    users: Iterable[tuple[str, UserColumns]],
    screens: list[str],
    instances: list[str],
    meta: Mapping[str, Any] | None = None,
) -> int:
    """Write a segment at ``path`` atomically (temporary name, then rename); return its size.

    No ``fsync``: a store of thousands of small day files would spend its time waiting on the
    disk, and a segment that a power loss tears anyway fails its size or checksum test when read
    and is read again from the source; the store is a cache, the source stays the truth.

    Raises ``OSError`` (a full disk, say) with nothing left under ``path``'s name.
    """
    items = list(users)
    n = sum(int(c.t.shape[0]) for _, c in items)
    index: dict[str, list[Any]] = {}
    offset = 0
    for user, c in items:
        count = int(c.t.shape[0])
        index[user] = [offset, count, _slice_crc(c.t, c.screen, c.instance), int(c.invalid), c.samples[:MAX_SAMPLES]]
        offset += count
    header = orjson.dumps(
        {"n": n, "users": index, "screens": screens, "instances": instances, "meta": dict(meta or {})}
    )
    head = _HEAD.pack(MAGIC, len(header)) + header + _CRC.pack(zlib.crc32(header))
    head += b"\0" * (-len(head) % 8)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(head)
            for column, dtype in (("t", np.int64), ("screen", np.int32), ("instance", np.int32)):
                for _, c in items:
                    fh.write(np.ascontiguousarray(getattr(c, column), dtype=dtype).tobytes())
            size = fh.tell()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return size


class Segment:
    """A segment file opened for reading; its header is checked at once, each slice when read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._fh = open(self.path, "rb")
        except FileNotFoundError:
            raise
        try:
            self._open()
        except BaseException:
            self._fh.close()
            raise

    def _open(self) -> None:
        fd = self._fh.fileno()
        size = os.fstat(fd).st_size
        first = os.pread(fd, _HEAD.size, 0)
        if len(first) < _HEAD.size:
            raise CorruptSegment(f"{self.path.name}: truncated header")
        magic, hlen = _HEAD.unpack(first)
        if magic != MAGIC or hlen > size:
            raise CorruptSegment(f"{self.path.name}: not a store segment of this version")
        raw = os.pread(fd, hlen + _CRC.size, _HEAD.size)
        if len(raw) < hlen + _CRC.size or _CRC.unpack(raw[hlen:])[0] != zlib.crc32(raw[:hlen]):
            raise CorruptSegment(f"{self.path.name}: header checksum mismatch")
        try:
            header = orjson.loads(raw[:hlen])
            self.n = int(header["n"])
            self.users: dict[str, list[Any]] = header["users"]
            self.screens: list[str] = header["screens"]
            self.instances: list[str] = header["instances"]
            self.meta: dict[str, Any] = header["meta"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise CorruptSegment(f"{self.path.name}: malformed header") from None
        start = _HEAD.size + hlen + _CRC.size
        self._base = start + (-start % 8)
        if size != self._base + 16 * self.n:
            raise CorruptSegment(f"{self.path.name}: {size} bytes, expected {self._base + 16 * self.n} (truncated?)")

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self, user: str) -> int:
        entry = self.users.get(user)
        return int(entry[1]) if entry else 0

    def read(self, user: str) -> UserColumns | None:
        """The user's events (checked against their crc), or ``None`` if the segment has none."""
        entry = self.users.get(user)
        if entry is None:
            return None
        offset, count, crc, invalid, samples = entry
        fd, n, base = self._fh.fileno(), self.n, self._base

        def column(at: int, width: int, dtype: type) -> np.ndarray:
            raw = os.pread(fd, count * width, at + offset * width)
            if len(raw) != count * width:
                raise CorruptSegment(f"{self.path.name}: short read")
            return np.frombuffer(raw, dtype=dtype)

        t = column(base, 8, np.int64)
        screen = column(base + 8 * n, 4, np.int32)
        instance = column(base + 12 * n, 4, np.int32)
        if _slice_crc(t, screen, instance) != crc:
            raise CorruptSegment(f"{self.path.name}: checksum mismatch in a user's events")
        if count and (
            int(screen.max()) >= len(self.screens)
            or int(instance.max()) >= len(self.instances)
            or int(screen.min()) < 0
            or int(instance.min()) < 0
        ):
            raise CorruptSegment(f"{self.path.name}: code out of its vocabulary")
        return UserColumns(t, screen, instance, int(invalid), list(samples))
