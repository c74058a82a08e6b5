"""Metrics as Prometheus reads them: scraped over HTTP and parsed with prometheus_client's parser,
after real jobs, from the API under gunicorn (2 processes, the project's config) and a real worker
reading the Elasticsearch protocol server through the official client."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack import free_port
from esproto import EsProtocolServer
from tests.helpers import PAST, WorkerProcess, planted_documents, worker_env
from tests.liveserver import LiveServer, bearer
from worker.sources.documents import FieldNames
from worker.sources.es_load import mapping

pytestmark = pytest.mark.slow  # gunicorn and a Celery worker as subprocesses

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def scrape(url: str) -> tuple[Samples, dict[str, str]]:
    """Every sample by name and labels, and every family's type."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: Samples = defaultdict(dict)
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[s.name][frozenset(s.labels.items())] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(frozenset(labels.items()), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Summed over the labels not named."""
    want = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if want <= set(k))


def conventional(types: dict[str, str], samples: Samples) -> None:
    """Names follow Prometheus' conventions: ours start with ``sessionizer_``, a counter's samples
    end in ``_total``, a duration is in ``_seconds``."""
    for name, kind in types.items():
        if name.startswith(("python_", "process_")) or name.endswith("_created"):
            continue  # prometheus_client's own (process metrics, creation times) in a single process
        assert name.startswith("sessionizer_"), name
        if kind == "counter":
            assert f"{name}_total" in samples, name
        if "duration" in name:
            assert name.endswith("_seconds") and kind == "histogram", name


def writers(folder: Path) -> set[str]:
    """The processes that wrote samples into a multiprocess folder (files are named by pid)."""
    return {m.group(1) for f in folder.iterdir() if (m := re.search(r"_(\d+)\.db$", f.name))}


@pytest.fixture
def es() -> Iterator[EsProtocolServer]:
    server = EsProtocolServer().start()
    server.create_index("usage-events", mappings=mapping(FieldNames("@timestamp", "util", "ecran", "instance")))
    docs = [d for d in planted_documents() if d["@timestamp"] != "garbage"]  # ES refuses that one at index time
    server.add_documents("usage-events", docs)
    yield server
    server.stop()


def test_api_and_worker_metrics_after_real_jobs(es: EsProtocolServer, tmp_path: Path) -> None:
    api_metrics_dir = tmp_path / "api-metrics"
    # the API knows the source as the workers do: results are shared only for identified data
    live = LiveServer(
        tmp_path,
        workers=2,
        PROMETHEUS_MULTIPROC_DIR=str(api_metrics_dir),
        EVENT_SOURCE="elasticsearch",
        ELASTICSEARCH_URL=es.url,
    ).start()
    port = free_port()
    env = worker_env(
        live.redis.url,
        EVENT_SOURCE="elasticsearch",
        ELASTICSEARCH_URL=es.url,
        ELASTICSEARCH_RETRY_MAX_ATTEMPTS="10",
        WORKER_METRICS_PORT=str(port),
        WORKER_METRICS_ADDR="127.0.0.1",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=2).start()
    es.faults.fail_searches(0.3, kinds=(503,), seed=3)  # transient failures, retried
    try:
        # a new connection per request, so both gunicorn processes serve some of them
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=live.base, headers=bearer("alpha"), timeout=60, limits=no_keepalive) as http:
            polls = 0

            def run(body: dict[str, Any]) -> dict[str, Any]:
                nonlocal polls
                job = http.post("/jobs", json=body).json()
                while job["status"] in ("queued", "running"):
                    time.sleep(0.2)
                    job = http.get(f"/jobs/{job['id']}").json()
                    polls += 1
                return job

            gap = {**PAST, "users": ["romain", "anes", "claire"], "method": "gap"}
            first = run(gap)
            again = run(gap)  # identical: reuses the first computation
            other = run({**PAST, "users": ["claire", "rare"], "method": "hdbscan"})
            assert [first["status"], again["status"], other["status"]] == ["succeeded"] * 3
            stats = [http.get(f"/jobs/{j['id']}/sessions").json()["stats"] for j in (first, other)]
            scanned = first["progress"]["events_scanned"] + other["progress"]["events_scanned"]

        # Whichever gunicorn process answers, a scrape counts every process's requests: make sure
        # both processes have served some (the kernel hands connections to either), then scrape
        # on new connections, each answered by either process.
        for _ in range(500):
            if len(writers(api_metrics_dir)) == 2:
                break
            urllib.request.urlopen(f"{live.base}/healthz", timeout=30).close()
        assert len(writers(api_metrics_dir)) == 2
        for _ in range(10):
            api, types = scrape(f"{live.base}/metrics")
            conventional(types, api)
            assert value(api, "sessionizer_http_requests_total", method="POST", route="/jobs", status="202") == 3
            polled = value(
                api, "sessionizer_http_requests_total", method="GET", route="/jobs/<job_id:job_id>", status="200"
            )
            assert polled == polls
            assert value(api, "sessionizer_http_request_duration_seconds_count", method="POST", route="/jobs") == 3
            assert (
                value(
                    api,
                    "sessionizer_http_requests_total",
                    method="GET",
                    route="/jobs/<job_id:job_id>/sessions",
                    status="200",
                )
                == 2
            )
            assert value(api, "sessionizer_jobs_submitted_total") == 3
            assert value(api, "sessionizer_shared_results_reused_total") == 1
            assert value(api, "sessionizer_jobs_finished_total", status="succeeded") == 2
            assert value(api, "sessionizer_jobs_finished_total", status="failed") == 0
            assert value(api, "sessionizer_job_duration_seconds_count", status="succeeded") == 2
            assert value(api, "sessionizer_job_duration_seconds_bucket", status="succeeded", le="+Inf") == 2
            assert value(api, "sessionizer_queue_depth", state="waiting") == 0
            assert value(api, "sessionizer_workers_alive") == 1

        wk, types = scrape(f"http://127.0.0.1:{port}/metrics")
        conventional(types, wk)
        assert value(wk, "sessionizer_units_total", outcome="done") == 5  # 3 users, then 2 users
        assert total(wk, "sessionizer_units_total") == 5
        assert value(wk, "sessionizer_unit_duration_seconds_count", outcome="done") == 5
        assert value(wk, "sessionizer_events_scanned_total") == scanned > 0
        assert value(wk, "sessionizer_invalid_events_total") == sum(s["invalid_events"] for s in stats) > 0
        opened = value(wk, "sessionizer_elasticsearch_pits_opened_total")
        assert (
            opened
            == es.pits_opened
            == value(wk, "sessionizer_elasticsearch_requests_total", operation="open_pit", status="200")
        )
        assert value(wk, "sessionizer_elasticsearch_pits_closed_total") == es.pits_closed == opened
        injected = es.faults.injected["503"]
        assert injected > 0
        assert value(wk, "sessionizer_elasticsearch_requests_total", operation="search", status="503") == injected
        assert value(wk, "sessionizer_elasticsearch_retries_total", operation="search") == injected
        assert total(wk, "sessionizer_source_failures_total") == 0
    finally:
        worker.stop()
        live.stop()


def test_metrics_answer_without_redis_and_can_be_turned_off(tmp_path: Path) -> None:
    from devstack import start_redis
    from webapp import create_app

    server = start_redis(tmp_path / "redis")
    on = create_app({"TESTING": True, "REDIS_URL": server.url}).test_client()
    off = create_app({"TESTING": True, "REDIS_URL": server.url, "METRICS_ENABLED": False}).test_client()
    assert off.get("/metrics").status_code == 404
    up = {f.name: f for f in text_string_to_metric_families(on.get("/metrics").get_data(as_text=True))}
    assert up["sessionizer_store_up"].samples[0].value == 1 and "sessionizer_queue_depth" in up
    server.stop()
    resp = on.get("/metrics")  # Redis gone: the HTTP figures still, and the store said down
    assert resp.status_code == 200
    down = {f.name: f for f in text_string_to_metric_families(resp.get_data(as_text=True))}
    assert down["sessionizer_store_up"].samples[0].value == 0 and "sessionizer_queue_depth" not in down
    assert "sessionizer_http_requests" in down
