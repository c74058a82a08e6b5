"""Sessions as Arrow tables, DataFrames and Parquet files (the ``[pandas]`` extra: pandas, pyarrow).

Rows arrive one by one from the NDJSON stream and are converted a batch at a time into one fixed
schema: UTC timestamps, dictionary-encoded (categorical) user and instance, 64-bit integer events,
booleans. Fields the service may add later and this schema does not know are left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as exc:  # the base install stays light: say how to get the extra
    raise ImportError("tables and files need the pandas extra: pip install './client[pandas]'") from exc

if TYPE_CHECKING:
    from pandas import DataFrame as DataFrame  # type: ignore[import-untyped]  # no pandas-stubs in the lock: DataFrame is Any

BATCH = 10_000
SCHEMA = pa.schema(
    [
        ("user", pa.dictionary(pa.int32(), pa.string())),
        ("instance", pa.dictionary(pa.int32(), pa.string())),
        ("start", pa.timestamp("us", tz="UTC")),
        ("end", pa.timestamp("us", tz="UTC")),
        ("duration_s", pa.float64()),
        ("events", pa.int64()),
        ("entry_screen", pa.string()),
        ("exit_screen", pa.string()),
        ("truncated_start", pa.bool_()),
        ("truncated_end", pa.bool_()),
        ("split_reason", pa.string()),
        ("session_id", pa.string()),
        ("screens", pa.int64()),
        ("engaged", pa.bool_()),
        ("active_s", pa.float64()),
    ]
)


def to_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    """Rows as decoded from the service's JSON -> one record batch of ``SCHEMA``."""
    columns = []
    for f in SCHEMA:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_dictionary(f.type):
            columns.append(pa.array(values, pa.string()).dictionary_encode())
        elif pa.types.is_timestamp(f.type):
            columns.append(pa.array(values, pa.string()).cast(f.type))  # ISO-8601 with "Z"
        else:
            columns.append(pa.array(values, f.type))
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


class TableBuilder:
    """Collects rows into Arrow batches, then one table or DataFrame."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.batches: list[pa.RecordBatch] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH:
            self.batches.append(to_batch(self.rows))
            self.rows = []

    def table(self) -> pa.Table:
        if self.rows or not self.batches:
            self.batches.append(to_batch(self.rows))
            self.rows = []
        return pa.Table.from_batches(self.batches, schema=SCHEMA).unify_dictionaries()

    def to_pandas(self) -> DataFrame:
        # dictionary -> categorical, timestamp[UTC] -> datetime64[.., UTC], int64, bool (never object)
        return self.table().to_pandas()


class ParquetSink:
    """Writes rows into a Parquet file one row group per ``BATCH`` rows, so memory stays flat."""

    def __init__(self, fh: BinaryIO) -> None:
        self.writer = pq.ParquetWriter(fh, SCHEMA)
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        self.writer.write_batch(to_batch(self.rows))
        self.rows = []

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None and self.rows:
            self.flush()
        self.writer.close()
