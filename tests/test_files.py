"""The file source and its event store: NDJSON, Parquet, folders, pieces, versions, faults."""

from __future__ import annotations

import fcntl
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from worker.eventstore import budget
from worker.eventstore.files import IDLE_S, FileStore, pieces_of
from worker.eventstore.locks import locked
from worker.sources import PermanentSourceError, Stopped
from worker.sources.accumulator import EventAccumulator
from worker.sources.documents import FieldNames
from worker.sources.files import FileSource

DOCS = [
    {"@timestamp": "2022-09-22T11:00:00Z", "util": "romain", "ecran": "connexion", "instance": "i1"},
    {"@timestamp": 1663844460000, "util": "romain", "ecran": "01", "instance": "i1"},
    {"@timestamp": 1663844470000, "util": "anes", "ecran": "accueil", "instance": "i2"},
    {"@timestamp": "nope", "util": "anes", "ecran": "accueil", "instance": "i2"},
]
ROOT = Path(__file__).resolve().parent.parent


def write_ndjson(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs) + "\n{not json}\n[1, 2]\n")
    return path


def read(
    src: FileSource, users: list[str], lo: int = 0, hi: int = 2**62
) -> tuple[dict[str, list[int]], EventAccumulator]:
    acc = src.read_events(users, lo, hi)
    return {u: acc.pop_user(u).t_ms.tolist() for u in users}, acc


def segments(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "files").glob("*.seg"))


def others(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "files").iterdir() if not p.name.endswith(".seg"))


def reference(path: Path, users: list[str], lo: int = 0, hi: int = 2**62) -> tuple[dict[str, tuple], int]:
    """Every line parsed in order by the plain accumulator: what the store must give back."""
    acc = EventAccumulator(FieldNames(), users=users, lo_ms=lo, hi_ms=hi)
    docs = []
    for line in path.read_bytes().split(b"\n"):
        try:
            docs.append(json.loads(line))
        except ValueError:
            pass
    acc.add_each(docs)
    screens, instances = acc.vocabulary()
    out = {}
    for u in users:
        ev = acc.pop_user(u)
        out[u] = (ev.t_ms.tolist(), [screens[c] for c in ev.screen], [instances[c] for c in ev.instance])
    return out, acc.invalid


def decoded(acc: EventAccumulator, users: list[str]) -> dict[str, tuple]:
    screens, instances = acc.vocabulary()
    out = {}
    for u in users:
        ev = acc.pop_user(u)
        out[u] = (ev.t_ms.tolist(), [screens[c] for c in ev.screen], [instances[c] for c in ev.instance])
    return out


def test_ndjson_reads_only_the_asked_users(tmp_path: Path) -> None:
    src = FileSource(write_ndjson(tmp_path / "e.ndjson", DOCS), store_dir=tmp_path / "store")
    got, acc = read(src, ["romain"])
    assert got == {"romain": [1663844400000, 1663844460000]} and acc.invalid == 0
    # the first read built the store: its documents came from the file
    assert acc.scanned == 2 and acc.from_source == 2
    got, acc = read(src, ["anes"])
    assert got == {"anes": [1663844470000]} and acc.invalid == 1
    assert "@timestamp" in acc.error_samples[0]
    # the requested user's documents, none of anyone else's; all from the store this time
    assert acc.scanned == 2 and acc.from_source == 0
    got, acc = read(src, ["nobody", "anes"])
    assert got == {"nobody": [], "anes": [1663844470000]} and acc.scanned == 2


def test_parquet_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    write_ndjson(folder / "a.ndjson", DOCS[:2])
    table = pa.table(
        {
            "@timestamp": pa.array([1663844470000, 1663844480000], pa.timestamp("ms", tz="UTC")),
            "util": ["anes", "anes"],
            "ecran": ["accueil", "devis"],
            "instance": ["i2", "i2"],
        }
    )
    pq.write_table(table, folder / "b.parquet")
    src = FileSource(folder, store_dir=tmp_path / "store")
    got, _ = read(src, ["romain", "anes"])
    assert got == {"romain": [1663844400000, 1663844460000], "anes": [1663844470000, 1663844480000]}
    assert len(segments(tmp_path / "store")) == 2  # one per file


def synthetic(path: Path, n: int, seed: int = 7) -> Path:
    """n documents of 9 users, out of time order, with ties, bad documents and blank lines."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        doc = {
            "@timestamp": 1_660_000_000_000 + rng.randrange(0, 40) * 60_000 * rng.randrange(1, 50),
            "util": f"u{rng.randrange(9)}",
            "ecran": f"s{rng.randrange(30)}",
            "instance": f"i{rng.randrange(4)}",
        }
        if i % 97 == 0:
            doc["@timestamp"] = "2022-09-22T11:00:00.250+02:00"
        if i % 89 == 0:
            del doc["ecran"]  # refused, counted for its user
        lines.append(json.dumps(doc))
        if i % 113 == 0:
            lines.append("" if i % 2 else "{broken")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("chunk", [1500, 4096, 20_000])
def test_pieces_give_exactly_what_one_pass_over_the_lines_gives(tmp_path: Path, chunk: int) -> None:
    path = synthetic(tmp_path / "e.ndjson", 3000)
    users = [f"u{k}" for k in range(9)] + ["nobody"]
    names = FieldNames()
    assert len(pieces_of([path], names, chunk)) > 1
    store = FileStore(tmp_path / "store" / "files", names, max_bytes=0, chunk_bytes=chunk)
    want, invalid = reference(path, users, 1_660_000_000_000, 1_660_090_000_000)
    for attempt in ("cold", "warm"):
        acc = store.read([path], users, 1_660_000_000_000, 1_660_090_000_000)
        assert acc.invalid == invalid > 0
        got = decoded(acc, users)
        assert got == want, attempt
        assert acc.scanned == sum(len(v[0]) for v in want.values()) + invalid
        assert acc.from_source == (acc.scanned if attempt == "cold" else 0)


def test_a_changed_file_leaves_one_version_not_two(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "e.ndjson", DOCS)
    store = tmp_path / "store"
    src = FileSource(path, store_dir=store)
    assert read(src, ["romain"])[0]["romain"] == [1663844400000, 1663844460000]
    (old,) = segments(store)
    write_ndjson(path, DOCS[:1])
    os.utime(path, ns=(1, 1))
    assert read(src, ["romain"])[0]["romain"] == [1663844400000]
    parts = segments(store)
    assert len(parts) == 1 and parts != [old]
    assert others(store) == [parts[0].replace(".seg", ".lock")]  # the old version's lock went with it


def test_a_segment_being_read_is_kept_until_its_reader_is_done(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "e.ndjson", DOCS)
    store = tmp_path / "store"
    src = FileSource(path, store_dir=store)
    read(src, ["romain"])
    (old,) = segments(store)
    seen: list[list[str]] = []
    fs = src.store
    real = fs._read_piece

    def reading(piece, users, should_stop, since_ms=None):  # type: ignore[no-untyped-def]
        # while this reader holds the old version, the file changes and another unit reads
        with locked(fs.root / f"{piece.name}.lock", fcntl.LOCK_SH):
            write_ndjson(path, DOCS[:1])
            os.utime(path, ns=(1, 1))
            assert read(FileSource(path, store_dir=store), ["romain"])[0]["romain"] == [1663844400000]
            seen.append(segments(store))
            return real(piece, users, should_stop, since_ms)

    fs._read_piece = reading  # type: ignore[method-assign]
    got = fs.read([path], ["anes"], 0, 2**62)
    assert got.pop_user("anes").t_ms.tolist() == [1663844470000]
    assert len(seen[0]) == 2 and old in seen[0]  # both kept while the old one was held
    read(src, ["romain"])  # the next read removes the old version
    assert old not in segments(store) and len(segments(store)) == 1


def test_stale_entries_are_removed_and_other_files_kept(tmp_path: Path) -> None:
    store = tmp_path / "store"
    other = FileSource(write_ndjson(tmp_path / "other.ndjson", DOCS), store_dir=store)
    read(other, ["romain"])
    (other_seg,) = segments(store)
    src = FileSource(write_ndjson(tmp_path / "e.ndjson", DOCS), store_dir=store)
    piece = pieces_of([src.path], src.names)[0]
    crashed = store / "files" / f"{piece.name}.seg.tmp999999"  # a writer that died
    crashed.write_bytes(b"half a segment")
    read(src, ["romain"])
    assert other_seg in segments(store) and len(segments(store)) == 2
    assert not crashed.exists()
    assert others(store) == sorted(s.replace(".seg", ".lock") for s in segments(store))
    # another file's segment goes once unread for IDLE_S
    old = time.time() - IDLE_S - 60
    os.utime(store / "files" / other_seg.replace(".seg", ".lock"), (old, old))
    read(src, ["anes"])
    assert segments(store) == [f"{piece.name}.seg"]


@pytest.mark.parametrize("damage", ["truncate", "flip_header", "flip_events", "garbage"])
def test_a_damaged_segment_is_never_served_but_built_again(tmp_path: Path, damage: str) -> None:
    path = synthetic(tmp_path / "e.ndjson", 500)
    users = ["u1", "u2"]
    src = FileSource(path, store_dir=tmp_path / "store")
    want = decoded(src.read_events(users, 0, 2**62), users)
    (seg,) = (tmp_path / "store" / "files").glob("*.seg")
    raw = bytearray(seg.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 10]
    elif damage == "flip_header":
        raw[40] ^= 0x01
    elif damage == "flip_events":
        raw[-3] ^= 0x40  # the last instance code of the last user
    else:
        raw = bytearray(b"not a segment at all" * 10)
    seg.write_bytes(bytes(raw))
    acc = src.read_events(users, 0, 2**62)
    if damage == "flip_events" and acc.from_source == 0:
        # the flipped byte lies in a user this read did not ask for: ask for everyone
        everyone = [f"u{k}" for k in range(9)]
        acc = src.read_events(everyone, 0, 2**62)
        want = decoded(FileSource(path, store_dir=tmp_path / "fresh").read_events(everyone, 0, 2**62), everyone)
        users = everyone
    assert acc.from_source > 0  # read again from the file
    assert decoded(acc, users) == want
    assert src.read_events(users, 0, 2**62).from_source == 0  # and mended for the next reader


def test_two_units_needing_the_same_piece_build_it_once(tmp_path: Path) -> None:
    path = synthetic(tmp_path / "e.ndjson", 20_000)
    store = tmp_path / "store"
    code = (
        "import sys, json, logging; from pathlib import Path; from worker.sources.files import FileSource\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "src = FileSource(Path(sys.argv[1]), store_dir=Path(sys.argv[2]))\n"
        "acc = src.read_events(['u1', 'u2', 'u3'], 0, 2**62)\n"
        "print(json.dumps([acc.scanned, acc.from_source]))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(store)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    results = [json.loads(out) for out, _ in outputs]
    assert sum(err.count("event store: built") for _, err in outputs) == 1  # built once, by one of them
    scanned = {r[0] for r in results}
    assert len(scanned) == 1
    # one piece: exactly one of them read it from the file, the others waited and read the store
    # one piece: one of them read it from the file; the others waited for it (counted as from the
    # source: it was built during their read) or came after it was built (from the store)
    froms = sorted(r[1] for r in results)
    assert froms[-1] == scanned.pop() and set(froms) <= {0, froms[-1]}
    assert len(segments(store)) == 1


def test_eviction_keeps_what_a_reader_holds(tmp_path: Path) -> None:
    store = tmp_path / "store"
    files = [synthetic(tmp_path / f"e{k}.ndjson", 2000, seed=k) for k in range(3)]
    for f in files:
        FileSource(f, store_dir=store).read_events(["u1"], 0, 2**62)
    sizes = {p.name: p.stat().st_size for p in (store / "files").glob("*.seg")}
    assert len(sizes) == 3
    held = pieces_of([files[0]], FieldNames())[0].name
    seen: dict[str, list[str]] = {}

    def meanwhile() -> bool:  # runs while files[0]'s segment is locked for reading
        if not seen:
            # a tiny bound: everything unheld goes, the held one stays
            budget.enforce(store, 1)
            seen["left"] = segments(store)
        return False

    src = FileSource(files[0], store_dir=store)
    fs = src.store
    real = fs._read_piece

    def reading(piece, users, should_stop, since_ms=None):  # type: ignore[no-untyped-def]
        with locked(fs.root / f"{piece.name}.lock", fcntl.LOCK_SH):
            meanwhile()
        return real(piece, users, should_stop, since_ms)

    fs._read_piece = reading  # type: ignore[method-assign]
    want = decoded(FileSource(files[0], store_dir=tmp_path / "fresh").read_events(["u1"], 0, 2**62), ["u1"])
    assert decoded(fs.read([files[0]], ["u1"], 0, 2**62), ["u1"]) == want
    assert seen["left"] == [f"{held}.seg"]
    # and a store read under a small bound stays under it once nobody holds anything
    small = FileSource(files[1], store_dir=store, max_bytes=max(sizes.values()) + 1)
    assert decoded(small.read_events(["u2"], 0, 2**62), ["u2"])
    assert budget.store_bytes(store) <= max(sizes.values()) + 1


def test_a_full_disk_fails_the_store_write_not_the_read(tmp_path: Path) -> None:
    """A real write failure: the reader runs with RLIMIT_FSIZE below a segment's size (writes
    beyond it fail with EFBIG, as a full disk fails them with ENOSPC)."""
    path = synthetic(tmp_path / "e.ndjson", 3000)
    want = decoded(FileSource(path, store_dir=tmp_path / "fresh").read_events(["u4"], 0, 2**62), ["u4"])
    code = (
        "import json, resource, signal, sys; from pathlib import Path\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))\n"
        "from worker.sources.files import FileSource\n"
        "acc = FileSource(Path(sys.argv[1]), store_dir=Path(sys.argv[2])).read_events(['u4'], 0, 2**62)\n"
        "screens, inst = acc.vocabulary(); ev = acc.pop_user('u4')\n"
        "print(json.dumps([ev.t_ms.tolist(), [screens[c] for c in ev.screen], [inst[c] for c in ev.instance]]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "store")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert tuple(json.loads(run.stdout)) == want["u4"]
    assert "could not write a segment" in run.stderr
    assert segments(tmp_path / "store") == []  # nothing half-written under a real name
    assert not list((tmp_path / "store" / "files").glob("*.tmp*"))


def test_missing_path_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentSourceError, match="does not exist"):
        FileSource(tmp_path / "missing.ndjson", store_dir=tmp_path / "store").read_events(["a"], 0, 1)


def test_stop_is_honoured(tmp_path: Path) -> None:
    src = FileSource(write_ndjson(tmp_path / "e.ndjson", DOCS), store_dir=tmp_path / "store")
    with pytest.raises(Stopped):
        src.read_events(["romain"], 0, 2**62, should_stop=lambda: True)


def test_counts_size_units_once_the_store_is_built(tmp_path: Path) -> None:
    path = synthetic(tmp_path / "e.ndjson", 2000)
    src = FileSource(path, store_dir=tmp_path / "store")
    assert src.counts(["u1", "u2"], 0, 2**62) is None  # nothing built yet
    src.read_events(["u1"], 0, 2**62)
    counts = src.counts(["u1", "u2", "nobody"], 0, 2**62)
    want, _ = reference(path, ["u1", "u2"])
    assert counts == {"u1": len(want["u1"][0]), "u2": len(want["u2"][0]), "nobody": 0}
    assert np.all(np.array(list(counts.values())) >= 0)


def test_pieces_built_since_a_jobs_start_count_as_read_from_the_source(tmp_path: Path) -> None:
    """A cold job's other units built the pieces this unit then reads: the job read them from
    the files all the same, and says so when given its start."""
    path = synthetic(tmp_path / "e.ndjson", 2000)
    src = FileSource(path, store_dir=tmp_path / "store")
    started_ms = int(time.time() * 1000) - 1000
    src.read_events(["u1"], 0, 2**62)  # a sibling unit builds the store
    acc = src.read_events(["u2"], 0, 2**62, since_ms=started_ms)
    assert acc.from_source == acc.scanned > 0
    later = src.read_events(["u2"], 0, 2**62, since_ms=int(time.time() * 1000) + 1000)  # a later job
    assert later.from_source == 0 and later.scanned == acc.scanned
