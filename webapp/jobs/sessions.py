"""A job's sessions as pages (``limit`` + ``cursor``, one ``user``), and as streams of bytes in
JSON, NDJSON or CSV, never the whole answer at once.

The job store keeps each unit's sessions as one JSON array (``orjson`` output: no whitespace),
read a few units at a time. The whole JSON answer is written around those arrays without
decoding them: the opening of the document, each array's inside (its brackets removed)
separated by commas, then the closing with the statistics. So the API holds a few units'
sessions at a time, whatever the number of sessions, and the first byte leaves before any is
read. A filtered read (``user=``, ``cursor``), NDJSON and CSV decode rows, still a unit at a
time; only a page (``limit``, at most 10,000) is built whole, because its next cursor goes in a
header.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from sessionizer.jobstore import JobStore

from ..cursors import seal, sessions_scope
from .schemas import SessionSchema

SESSION_FIELDS = tuple(SessionSchema().fields)


@dataclass
class SessionPage:
    """The rows from a cursor on, at most ``limit`` of them, only ``user``'s when given; once
    iterated, ``next_cursor`` says where the next page starts (``None`` on the last one)."""

    store: JobStore
    job_id: str
    cursor: tuple[int, ...] | None = None
    limit: int | None = None
    user: str | None = None
    next_cursor: str | None = None

    def rows(self) -> Iterator[dict[str, Any]]:
        unit, offset = self.cursor or (0, 0)
        n = 0
        for u, k, row in self.store.iter_sessions(self.job_id, unit, offset):
            if self.user is not None and row.get("user") != self.user:
                continue
            if self.limit is not None and n == self.limit:
                self.next_cursor = seal(sessions_scope(self.job_id), u, k)
                return
            n += 1
            yield row


def csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """A header row, then one row a session, in chunks of about 64 KiB."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SESSION_FIELDS)
    for row in rows:
        writer.writerow(
            ["true" if v is True else "false" if v is False else v for v in (row.get(f) for f in SESSION_FIELDS)]
        )
        if buf.tell() > 1 << 16:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _chunked(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Join small pieces into chunks of about ``size`` bytes (a chunk per piece is slow to read)."""
    buf: list[bytes] = []
    held = 0
    for piece in pieces:
        buf.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(buf)
            buf.clear()
            held = 0
    if buf:
        yield b"".join(buf)


def ndjson_lines(rows: Iterator[dict[str, Any]], size: int = 1 << 16) -> Iterator[bytes]:
    """One JSON object a session and a line, sent in chunks of about 64 KiB: a chunk per line made
    a browser read 100,000 sessions about 5 times slower than one JSON body (benchmarks/bench_page.py)."""
    return _chunked((orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in rows), size)


def json_document(job_id: str, stats: dict[str, Any], unit_arrays: Iterable[bytes]) -> Iterator[bytes]:
    """``{"job_id", "sessions": [...], "stats", "next_cursor": null}`` from the units' stored arrays."""
    yield b'{"job_id":' + orjson.dumps(job_id) + b',"sessions":['
    first = True
    for array in unit_arrays:
        inside = array.strip()[1:-1]
        if not inside.strip():
            continue  # a unit without sessions
        if not first:
            yield b","
        yield inside
        first = False
    yield b'],"stats":' + orjson.dumps(stats) + b',"next_cursor":null}'


def json_rows_document(
    job_id: str, stats: dict[str, Any], rows: Iterable[dict[str, Any]], size: int = 1 << 16
) -> Iterator[bytes]:
    """The same document from decoded rows (a ``user=`` or ``cursor`` read without ``limit``),
    in chunks of about 64 KiB."""
    yield b'{"job_id":' + orjson.dumps(job_id) + b',"sessions":['
    items = ((b"," if i else b"") + orjson.dumps(row) for i, row in enumerate(rows))
    yield from _chunked(items, size)
    yield b'],"stats":' + orjson.dumps(stats) + b',"next_cursor":null}'
