"""Shared results are keyed by the data, end to end: a real Celery worker per source, the API
configured with the same source, as a deployment is. Changing the events file, pointing
``EVENTS_PATH`` elsewhere, or pointing at another Elasticsearch never serves the old result."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from esproto import EsProtocolServer
from tests.helpers import RedisDatabases, WorkerProcess, planted_documents, wait_finished, worker_env

pytestmark = pytest.mark.slow  # real Celery worker subprocesses

BODY = {
    "users": ["romain", "anes", "claire"],
    "start": "2022-09-22T00:00Z",
    "end": "2022-09-30T00:00Z",
    "method": "gap",
    "params": {"max_gap_s": 900},
}
INDEX = "usage-events"


def write_events(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture
def deploy(redis_databases: RedisDatabases, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``deploy(**source settings)``: a worker and an API client with those settings, all on one
    Redis database (one deployment re-configured between calls)."""
    url = redis_databases.take()
    workers: list[WorkerProcess] = []

    def start(**source: str) -> Any:
        from webapp import create_app

        for w in workers:  # the deployment moves to the new settings: the old worker stops
            w.stop()
        w = WorkerProcess(
            worker_env(url, EVENT_STORE_DIR=str(tmp_path / "cache"), **source),
            tmp_path / f"worker{len(workers)}.log",
            concurrency=1,
            name=f"w{len(workers)}",
        )
        workers.append(w.start())
        return create_app({"TESTING": True, "REDIS_URL": url, **source}).test_client()

    yield start
    for w in workers:
        w.stop()
    redis_databases.give_back(url)


def run(client: Any, body: dict[str, Any] = BODY) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    resp = client.post("/jobs", json=body)
    assert resp.status_code == 202, resp.get_json()
    job = wait_finished(client, resp.get_json()["id"])
    assert job["status"] == "succeeded", job
    return job, client.get(f"/jobs/{job['id']}/sessions").get_json()["sessions"]


def users_of(sessions: list[dict[str, Any]]) -> set[str]:
    return {s["user"] for s in sessions}


def test_a_changed_or_moved_events_file_is_not_served_the_old_result(deploy, tmp_path) -> None:
    events = write_events(tmp_path / "events.ndjson", planted_documents())
    client = deploy(EVENT_SOURCE="file", EVENTS_PATH=str(events))
    first, sessions = run(client)
    assert first["shared"] is False and first["computed_at"] == first["started_at"] is not None
    assert users_of(sessions) == {"romain", "anes", "claire"}

    again, same = run(client)  # the same data: the earlier computation is followed, and says so
    assert again["shared"] is True and again["computed_at"] == first["computed_at"] and same == sessions

    write_events(events, [d for d in planted_documents() if d["util"] != "anes"])  # anes's events deleted
    changed, fewer = run(client)
    assert changed["shared"] is False and changed["computed_at"] != first["computed_at"]
    assert users_of(fewer) == {"romain", "claire"}

    moved = write_events(tmp_path / "elsewhere.ndjson", planted_documents())  # same content, another path
    client = deploy(EVENT_SOURCE="file", EVENTS_PATH=str(moved))
    elsewhere, again_all = run(client)
    assert elsewhere["shared"] is False and users_of(again_all) == {"romain", "anes", "claire"}

    os.utime(moved, ns=(1, 1))  # touched (same size, other modification time): not the same data either
    touched, _ = run(client)
    assert touched["shared"] is False


@pytest.fixture
def two_clusters() -> Iterator[tuple[EsProtocolServer, EsProtocolServer]]:
    docs = [d for d in planted_documents() if d["@timestamp"] != "garbage"]
    with EsProtocolServer() as a, EsProtocolServer() as b:
        for server, wanted in ((a, docs), (b, [d for d in docs if d["util"] != "claire"])):
            server.create_index(
                INDEX,
                mappings={
                    "properties": {
                        "@timestamp": {"type": "date"},
                        "util": {"type": "keyword"},
                        "ecran": {"type": "keyword"},
                        "instance": {"type": "keyword"},
                    }
                },
            )
            server.add_documents(INDEX, wanted)
        yield a, b


def test_another_elasticsearch_is_not_served_the_old_result(deploy, two_clusters) -> None:
    a, b = two_clusters
    es = {"EVENT_SOURCE": "elasticsearch", "ELASTICSEARCH_INDEX": INDEX}
    client = deploy(**es, ELASTICSEARCH_URL=a.url)
    first, on_a = run(client)
    assert users_of(on_a) == {"romain", "anes", "claire"}
    assert run(client)[0]["shared"] is True  # cluster A again: shared

    client = deploy(**es, ELASTICSEARCH_URL=b.url)  # another cluster (another address)
    other, on_b = run(client)
    assert other["shared"] is False and users_of(on_b) == {"romain", "anes"}
    assert b.requests("POST", "_search")  # B was really read

    client = deploy(
        **{**es, "ELASTICSEARCH_INDEX": "other-index"}, ELASTICSEARCH_URL=a.url
    )  # same cluster, other index
    resp = client.post("/jobs", json=BODY)
    job = wait_finished(client, resp.get_json()["id"])
    assert job["status"] == "failed" and job["error"]["type"] == "index_not_found", job  # read, not shared


def test_other_field_names_are_other_data(deploy, tmp_path) -> None:
    events = write_events(
        tmp_path / "events.ndjson", [{**d, "who": d["util"]} if d["util"] != "anes" else d for d in planted_documents()]
    )
    client = deploy(EVENT_SOURCE="file", EVENTS_PATH=str(events))
    _, by_util = run(client)
    client = deploy(EVENT_SOURCE="file", EVENTS_PATH=str(events), FIELD_USER="who")
    job, by_who = run(client)
    assert job["shared"] is False and users_of(by_util) == {"romain", "anes", "claire"}
    assert users_of(by_who) == {"romain", "claire"}  # anes's documents have no "who"
