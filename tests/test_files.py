"""The file source: NDJSON, Parquet, folders, and the per-user partition cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from worker.sources import PermanentSourceError, Stopped
from worker.sources.files import FileSource

DOCS = [
    {"@timestamp": "2022-09-22T11:00:00Z", "util": "romain", "ecran": "connexion", "instance": "i1"},
    {"@timestamp": 1663844460000, "util": "romain", "ecran": "01", "instance": "i1"},
    {"@timestamp": 1663844470000, "util": "anes", "ecran": "accueil", "instance": "i2"},
    {"@timestamp": "nope", "util": "anes", "ecran": "accueil", "instance": "i2"},
]


def write_ndjson(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs) + "\n{not json}\n[1, 2]\n")
    return path


def read(src: FileSource, users: list[str], lo: int = 0, hi: int = 2**62) -> dict[str, list[int]]:
    acc = src.read_events(users, lo, hi)
    return {u: acc.pop_user(u).t_ms.tolist() for u in users}, acc


def test_ndjson_reads_only_the_asked_users(tmp_path: Path) -> None:
    src = FileSource(write_ndjson(tmp_path / "e.ndjson", DOCS), cache_dir=tmp_path / "cache")
    got, acc = read(src, ["romain"])
    assert got == {"romain": [1663844400000, 1663844460000]} and acc.invalid == 0
    got, acc = read(src, ["anes"])
    assert got == {"anes": [1663844470000]} and acc.invalid == 1


def test_parquet_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    write_ndjson(folder / "a.ndjson", DOCS[:2])
    table = pa.table({
        "@timestamp": pa.array([1663844470000, 1663844480000], pa.timestamp("ms", tz="UTC")),
        "util": ["anes", "anes"], "ecran": ["accueil", "devis"], "instance": ["i2", "i2"],
    })
    pq.write_table(table, folder / "b.parquet")
    src = FileSource(folder, cache_dir=tmp_path / "cache")
    got, _ = read(src, ["romain", "anes"])
    assert got == {"romain": [1663844400000, 1663844460000], "anes": [1663844470000, 1663844480000]}


def test_a_changed_file_is_partitioned_again(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "e.ndjson", DOCS)
    src = FileSource(path, cache_dir=tmp_path / "cache")
    assert read(src, ["romain"])[0]["romain"] == [1663844400000, 1663844460000]
    write_ndjson(path, DOCS[:1])
    os.utime(path, ns=(1, 1))
    assert read(src, ["romain"])[0]["romain"] == [1663844400000]
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2


def test_missing_path_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentSourceError, match="does not exist"):
        FileSource(tmp_path / "missing.ndjson").read_events(["a"], 0, 1)


def test_stop_is_honoured(tmp_path: Path) -> None:
    src = FileSource(write_ndjson(tmp_path / "e.ndjson", DOCS), cache_dir=tmp_path / "cache")
    with pytest.raises(Stopped):
        src.read_events(["romain"], 0, 2**62, should_stop=lambda: True)
