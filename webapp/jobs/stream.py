"""A job's sessions as a stream of bytes, in JSON, NDJSON or CSV, never the whole answer at once.

The job store keeps each unit's sessions as one JSON array (``orjson`` output: no whitespace),
read here one unit after the other. The whole JSON answer is written around those arrays
without decoding them: the opening of the document, each array's inside (its brackets removed)
separated by commas, then the closing with the statistics. So the API holds one unit's sessions
at a time, whatever the number of sessions, and the first byte leaves before any is read. Only
a filtered or paged read decodes rows (NDJSON, CSV, ``user=``), and still one unit at a time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

# Sessions per chunk written to the client for the row-by-row formats: big enough that the
# per-write overhead vanishes, small enough to stay a few hundred kilobytes.
_ROWS_PER_CHUNK = 1000


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


def json_rows_document(job_id: str, stats: dict[str, Any], rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """The same document from decoded rows (a ``user=`` or ``cursor`` read without ``limit``)."""
    yield b'{"job_id":' + orjson.dumps(job_id) + b',"sessions":['
    sep = b""
    for chunk in _chunks(rows):
        yield sep + b",".join(orjson.dumps(r) for r in chunk)
        sep = b","
    yield b'],"stats":' + orjson.dumps(stats) + b',"next_cursor":null}'


def ndjson_lines(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """One session a line."""
    for chunk in _chunks(rows):
        yield b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in chunk)


def csv_lines(rows: Iterable[dict[str, Any]], fields: list[str]) -> Iterator[str]:
    """A header row, then one session a row (booleans as ``true``/``false``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow(["true" if v is True else "false" if v is False else v for v in (row.get(f) for f in fields)])
        if buf.tell() > 1 << 16:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _chunks(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _ROWS_PER_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
