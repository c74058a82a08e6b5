"""The file source: NDJSON, Parquet, folders, and the per-user partition cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from worker.sources import PermanentSourceError, Stopped
from worker.sources.files import FileSource
from worker.sources.partitions import IDLE_S, source_key

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


def cache_entries(cache: Path) -> tuple[list[str], list[str]]:
    """(partition folders, other entries: lock files, temporary folders) in a cache folder."""
    parts = sorted(p.name for p in cache.iterdir() if p.is_dir() and (p / "DONE").exists())
    return parts, sorted(p.name for p in cache.iterdir() if p.name not in parts)


def test_a_changed_file_leaves_one_partition_not_two(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "e.ndjson", DOCS)
    cache = tmp_path / "cache"
    src = FileSource(path, cache_dir=cache)
    assert read(src, ["romain"])[0]["romain"] == [1663844400000, 1663844460000]
    (old,), _ = cache_entries(cache)
    write_ndjson(path, DOCS[:1])
    os.utime(path, ns=(1, 1))
    assert read(src, ["romain"])[0]["romain"] == [1663844400000]
    parts, others = cache_entries(cache)
    assert len(parts) == 1 and parts != [old]
    assert others == [f"{parts[0]}.lock"]  # the old version's lock file went with it


def test_a_partition_being_read_is_kept_until_its_reader_is_done(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "e.ndjson", DOCS)
    cache = tmp_path / "cache"
    src = FileSource(path, cache_dir=cache)
    read(src, ["romain"])
    seen: list[list[str]] = []

    def meanwhile() -> bool:
        # runs while the first read holds the old version: the file changes, another unit reads
        if not seen:
            write_ndjson(path, DOCS[:1])
            os.utime(path, ns=(1, 1))
            assert read(src, ["romain"])[0]["romain"] == [1663844400000]
            seen.append(cache_entries(cache)[0])
        return False

    (old_version,), _ = cache_entries(cache)
    # this reader picks its version before the change; it must still find every bucket
    got = src.read_events(["anes"], 0, 2**62, should_stop=meanwhile)
    assert got.pop_user("anes").t_ms.tolist() == [1663844470000]
    assert len(seen[0]) == 2 and old_version in seen[0]  # both while the old one was held
    read(src, ["romain"])  # the next read removes the old version
    parts, _ = cache_entries(cache)
    assert len(parts) == 1 and old_version not in parts


def test_stale_entries_are_removed_and_other_sources_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    other = FileSource(write_ndjson(tmp_path / "other.ndjson", DOCS), cache_dir=cache)
    read(other, ["romain"])
    (other_part,), _ = cache_entries(cache)
    legacy = cache / ("ab" * 12)  # the name format of the cache before the removal rule
    legacy.mkdir()
    (legacy / "DONE").touch()
    (cache / f"{legacy.name}.lock").touch()
    src = FileSource(write_ndjson(tmp_path / "e.ndjson", DOCS), cache_dir=cache)
    crashed = cache / f"{source_key(src.path, 'util')}-{src.version()}.tmp999999"  # a writer that died
    crashed.mkdir()
    read(src, ["romain"])
    parts, others = cache_entries(cache)
    assert other_part in parts and legacy.name not in parts and len(parts) == 2
    assert others == sorted(f"{p}.lock" for p in parts)  # no temporary folder, no orphan lock
    # another events path's partition goes once unread for IDLE_S
    old = time.time() - IDLE_S - 60
    os.utime(cache / f"{other_part}.lock", (old, old))
    read(src, ["anes"])
    assert cache_entries(cache)[0] == [p for p in parts if p != other_part]


def test_missing_path_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentSourceError, match="does not exist"):
        FileSource(tmp_path / "missing.ndjson").read_events(["a"], 0, 1)


def test_stop_is_honoured(tmp_path: Path) -> None:
    src = FileSource(write_ndjson(tmp_path / "e.ndjson", DOCS), cache_dir=tmp_path / "cache")
    with pytest.raises(Stopped):
        src.read_events(["romain"], 0, 2**62, should_stop=lambda: True)
