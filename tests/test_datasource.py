"""What identifies the data a job reads, and when a range has settled (sessionizer/datasource.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sessionizer.datasource import normalised_url, settled, source_identity
from sessionizer.methods import read_margin_s
from sessionizer.settings import load_settings
from worker.core.params import read_margin_ms

REQUEST = {
    "users": ["a"],
    "start": "2022-09-01T00:00:00Z",
    "end": "2022-09-02T00:00:00Z",
    "method": "gap",
    "params": {"max_gap_s": 1800.0, "max_span_s": 86400.0},
}


def identity(**overrides: str) -> str | None:
    return source_identity(load_settings({}, overrides))


def test_a_range_settles_once_everything_it_reads_is_settle_s_old() -> None:
    read_end = datetime(2022, 9, 2, tzinfo=UTC) + timedelta(seconds=86400 + 1800)
    assert settled(REQUEST, 3600, now=read_end + timedelta(seconds=3600))
    assert not settled(REQUEST, 3600, now=read_end + timedelta(seconds=3599))
    # the read margin counts: the range's end alone would have settled long before
    assert not settled(REQUEST, 0, now=datetime(2022, 9, 2, 12, tzinfo=UTC))


def test_the_apis_read_margin_is_the_cores() -> None:
    for method, params in (
        ("gap", {}),
        ("hdbscan", {}),
        ("gap", {"max_gap_s": 60.5, "max_span_s": 10.0}),
        ("hdbscan", {"split_idle_s": 7200.0, "min_samples": None}),
    ):
        assert read_margin_ms(method, params) == int(read_margin_s(method, params) * 1000) + 1


def test_elasticsearch_identity_is_the_cluster_address_and_the_index() -> None:
    es = {"EVENT_SOURCE": "elasticsearch", "ELASTICSEARCH_URL": "http://es.example:9200"}
    base = identity(**es)
    assert base is not None
    assert identity(**{**es, "ELASTICSEARCH_URL": "HTTP://user:pw@ES.example:9200/"}) == base  # one cluster
    assert identity(**{**es, "ELASTICSEARCH_URL": "http://es.example"}) == base  # default port
    assert identity(**{**es, "ELASTICSEARCH_URL": "http://es2.example:9200"}) != base
    assert identity(**{**es, "ELASTICSEARCH_INDEX": "other"}) != base
    assert identity(**{**es, "FIELD_SCREEN": "screen"}) != base
    assert normalised_url("https://u:secret@Host") == "https://host:443"  # never the credentials


def test_file_identity_follows_the_files(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text('{"util": "a"}\n')
    files = {"EVENT_SOURCE": "file", "EVENTS_PATH": str(events)}
    base = identity(**files)
    assert base is not None and identity(**files) == base
    events.write_text('{"util": "b"}\n')  # same size, new modification time
    os.utime(events, ns=(1, 1))
    assert identity(**files) != base
    assert identity(**{**files, "FIELD_USER": "who"}) != identity(**files)
    assert identity(**{**files, "EVENTS_PATH": str(tmp_path / "missing.ndjson")}) is None  # out of reach: never shared
