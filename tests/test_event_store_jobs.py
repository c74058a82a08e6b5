"""The event store under whole jobs, through real Celery workers: a repeated, overlapping or
extended range, and late documents, give the sessions a cold full scan gives (a worker with an
empty store), while the source sends only what the store lacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from esproto import EsProtocolServer
from tests.helpers import RedisDatabases, WorkerProcess, planted_documents, wait_finished, worker_env
from worker.sources.es_load import mapping

pytestmark = pytest.mark.slow  # real Celery worker subprocesses

INDEX = "usage-events"
BODY = {
    "users": ["romain", "anes", "claire", "solo", "ghost"],
    "start": "2022-09-22T00:00Z",
    "end": "2022-09-27T00:00Z",
    "method": "hdbscan",
    "params": {"min_cluster_size": 5},
}
FRESH = {"Cache-Control": "no-cache"}  # never a shared result: every job computes


@pytest.fixture
def es() -> Iterator[EsProtocolServer]:
    with EsProtocolServer() as server:
        server.create_index(INDEX, mapping())
        server.add_documents(
            INDEX, [d for d in planted_documents() if d["@timestamp"] != "garbage"]
        )  # a date field refuses it
        yield server


@pytest.fixture
def deployment(es: EsProtocolServer, redis_databases: RedisDatabases, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """``deployment(store)``: an API client and a worker on a Redis database of their own, reading
    the test's Elasticsearch through the event store folder ``tmp_path / store``."""
    started: list[tuple[str, WorkerProcess]] = []

    def start(store: str) -> Any:
        from webapp import create_app

        url = redis_databases.take()
        env = worker_env(
            url,
            EVENT_SOURCE="elasticsearch",
            ELASTICSEARCH_URL=es.url,
            ELASTICSEARCH_INDEX=INDEX,
            ELASTICSEARCH_PAGE_SIZE="50",
            EVENT_STORE_DIR=str(tmp_path / store),
        )
        worker = WorkerProcess(
            env, tmp_path / f"{store}-{len(started)}.log", concurrency=2, name=f"{store}{len(started)}"
        ).start()
        started.append((url, worker))
        return create_app(
            {
                "TESTING": True,
                "REDIS_URL": url,
                "EVENT_SOURCE": "elasticsearch",
                "ELASTICSEARCH_URL": es.url,
                "ELASTICSEARCH_INDEX": INDEX,
            }
        ).test_client()

    yield start
    for url, worker in started:
        worker.stop()
        redis_databases.give_back(url)


def run(client: Any, es: EsProtocolServer, **changes: Any) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    es.reset_counters()
    resp = client.post("/jobs", json={**BODY, **changes}, headers=FRESH)
    assert resp.status_code == 202, resp.get_json()
    job = wait_finished(client, resp.get_json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    return job, client.get(f"/jobs/{job['id']}/sessions").get_json()["sessions"], es.hits_sent


def test_repeat_overlap_extension_and_late_documents_equal_a_cold_scan(deployment, es) -> None:
    warm = deployment("store")
    first, sessions, sent = run(warm, es)
    assert sessions and sent == first["progress"]["events_from_source"] > 0
    assert first["progress"]["events_scanned"] > 0

    again, same, sent = run(warm, es)
    assert same == sessions and sent == 0 and again["progress"]["events_from_source"] == 0
    assert again["progress"]["events_scanned"] == first["progress"]["events_scanned"]

    cases = [
        {"start": "2022-09-20T00:00Z", "end": "2022-09-25T00:00Z"},  # an overlap
        {"end": "2022-09-30T00:00Z"},
    ]  # an extension
    for changes in cases:
        job, got, sent = run(warm, es, **changes)
        cold, expected, cold_sent = run(deployment(f"cold{len(changes)}"), es, **changes)
        assert got == expected and job["progress"]["events_scanned"] == cold["progress"]["events_scanned"]
        assert sent == job["progress"]["events_from_source"] < cold_sent  # only the days the store lacked

    # documents indexed late into a settled day that the store holds: read again, counted
    late = [
        {"@timestamp": f"2022-09-23T16:{m:02d}:00Z", "util": "romain", "ecran": "late", "instance": "i9"}
        for m in range(0, 30, 3)
    ]
    es.add_documents(INDEX, late)
    job, got, sent = run(warm, es)
    _, expected, _ = run(deployment("cold-late"), es)
    assert got == expected and got != sessions and 0 < sent < first["progress"]["events_from_source"]
    assert any(s["entry_screen"] == "late" for s in got)
