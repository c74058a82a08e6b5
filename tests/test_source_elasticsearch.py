"""ElasticsearchSource against the protocol server, through the official client (never patched)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from esproto import EsProtocolServer
from sessionizer.settings import load_settings
from worker.sources.accumulator import EventAccumulator
from worker.sources.base import PermanentSourceError, Stopped, TransientSourceError
from worker.sources.documents import FieldNames
from worker.sources.elasticsearch import FILTER_PATH, ElasticsearchSource, from_settings
from worker.sources.es_client import build_client
from worker.sources.es_load import bulk_load, ensure_index, mapping
from worker.sources.es_load import main as es_load_main
from worker.sources.es_retry import RetryPolicy

INDEX = "usage-events"
T0 = 1663844400000  # 2022-09-22T11:00:00Z
USERS = [f"user{i}" for i in range(8)]
LO, HI = T0 + 3_600_000, T0 + 5 * 3_600_000
FAST_RETRY = RetryPolicy(max_attempts=10, max_elapsed_s=20.0, base_delay_s=0.001, max_delay_s=0.01)


def _iso(ms: int, offset_h: int) -> str:
    tz = timezone(timedelta(hours=offset_h))
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="milliseconds")


def _make_docs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(valid documents, invalid documents that still match users and range)."""
    rng = random.Random(7)
    docs = []
    for i in range(3000):
        t = T0 + rng.randrange(6 * 3_600_000)
        ts: Any = t if i % 2 else _iso(t, rng.choice([0, 2, -5]))
        docs.append(
            {
                "@timestamp": ts,
                "util": rng.choice(USERS),
                "ecran": f"screen{rng.randrange(12)}",
                "instance": f"instance{rng.randrange(4)}",
            }
        )
    # boundaries: exactly lo and hi are in, one ms outside is out
    for t in (LO, HI, LO - 1, HI + 1):
        docs.append({"@timestamp": t, "util": "user1", "ecran": "edge", "instance": "instance0"})
    bad = [
        {"@timestamp": LO + 10, "util": "user1", "ecran": 7, "instance": "instance0"},  # a number, not a string
        {"@timestamp": LO + 11, "util": "user2", "instance": "instance0"},  # no screen
        {"@timestamp": LO + 12, "util": "user2", "ecran": "", "instance": "instance0"},  # empty screen
    ]
    return docs, bad


def _ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def _expected(docs: list[dict[str, Any]], users: list[str], lo: int = LO, hi: int = HI) -> list[tuple]:
    return sorted(
        (d["util"], _ms(d["@timestamp"]), d["ecran"], d["instance"])
        for d in docs
        if d["util"] in users and lo <= _ms(d["@timestamp"]) <= hi
    )


def _events(acc: EventAccumulator) -> list[tuple]:
    screens, instances = acc.vocabulary()
    out = []
    for user in acc.user_names:
        ev = acc.pop_user(user)
        out += [(user, int(t), screens[s], instances[i]) for t, s, i in zip(ev.t_ms, ev.screen, ev.instance)]
    return sorted(out)


@pytest.fixture(scope="module")
def dataset() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return _make_docs()


@pytest.fixture
def es(dataset: tuple[list, list]) -> Iterator[EsProtocolServer]:
    docs, bad = dataset
    with EsProtocolServer() as server:
        server.create_index(INDEX, {"mappings": None} and mapping())
        server.add_documents(INDEX, docs + bad)
        yield server


@pytest.fixture
def client(es: EsProtocolServer) -> Iterator[Elasticsearch]:
    c = build_client(es.url, request_timeout_s=5)
    yield c
    c.close()


def _source(client: Elasticsearch, **kw: Any) -> ElasticsearchSource:
    kw.setdefault("page_size", 100)
    kw.setdefault("retry", FAST_RETRY)
    return ElasticsearchSource(client, INDEX, FieldNames(), **kw)


def _searches(es: EsProtocolServer) -> list:
    return [r for r in es.requests("POST", "/_search") if r.path == "/_search"]


WANTED = ["user1", "user2", "user5"]


def test_reads_every_event_exactly_over_many_pages(es: EsProtocolServer, client: Elasticsearch, dataset) -> None:
    docs, bad = dataset
    progress: list[int] = []
    acc = _source(client).read_events(WANTED, LO, HI, on_progress=progress.append)
    expected = _expected(docs, WANTED)
    assert _events(acc) == expected
    assert ("user1", LO, "edge", "instance0") in expected and ("user1", HI, "edge", "instance0") in expected
    assert acc.invalid == len(bad) and acc.scanned == len(expected) + len(bad)
    searches = _searches(es)
    assert len(searches) == (acc.scanned // 100) + 1 and len(searches) > 5
    assert progress == sorted(progress) and progress[-1] == acc.scanned and len(progress) == len(searches)
    assert es.pits_opened == 1 and es.open_pits == 0
    assert es.stale_pit_searches == 0  # always the newest pit_id


def test_sends_the_documented_request(es: EsProtocolServer, client: Elasticsearch) -> None:
    _source(client).read_events(WANTED, LO, HI)
    pit_open = es.requests("POST", "/_pit")[0]
    assert pit_open.path == f"/{INDEX}/_pit" and pit_open.query["keep_alive"] == "2m"
    searches = _searches(es)
    first, second = searches[0].json(), searches[1].json()
    assert set(searches[0].query["filter_path"].split(",")) >= {"pit_id", "hits.hits._source", "hits.hits.sort"}
    assert searches[0].query["filter_path"] == FILTER_PATH
    assert first["sort"] == ["_doc", "_shard_doc"] and first["track_total_hits"] is False
    assert first["size"] == 100 and first["_source"] == ["@timestamp", "util", "ecran", "instance"]
    filters = first["query"]["bool"]["filter"]
    assert {"terms": {"util": sorted(WANTED)}} in filters
    rng = next(f["range"]["@timestamp"] for f in filters if "range" in f)
    assert rng["gte"] == LO and rng["lte"] == HI
    assert "search_after" not in first and len(second["search_after"]) == 2
    assert first["pit"]["keep_alive"] == "2m" and second["pit"]["id"] != first["pit"]["id"]
    closes = es.requests("DELETE", "/_pit")
    assert len(closes) == 1 and closes[0].status == 200


def test_zero_hits(es: EsProtocolServer, client: Elasticsearch) -> None:
    acc = _source(client).read_events(["nobody"], LO, HI)
    assert acc.scanned == 0 and acc.user_names == []
    assert len(_searches(es)) == 1 and es.open_pits == 0 and es.pits_closed == 1


def test_missing_index_is_permanent_and_named(es: EsProtocolServer, client: Elasticsearch) -> None:
    src = ElasticsearchSource(client, "no-such-index", retry=FAST_RETRY)
    with pytest.raises(PermanentSourceError, match=r"index \[no-such-index\] not found") as err:
        src.read_events(WANTED, LO, HI)
    assert err.value.kind == "index_not_found" and not err.value.transient
    assert len(es.requests("POST", "/_pit")) == 1  # not retried


def test_unauthorized_is_permanent_without_secrets(es: EsProtocolServer) -> None:
    es.faults.require_auth(api_key="the-right-key")
    c = build_client(es.url, api_key="a-wrong-key-s3cr3t")
    try:
        with pytest.raises(PermanentSourceError) as err:
            _source(c).read_events(WANTED, LO, HI)
    finally:
        c.close()
    assert err.value.kind == "unauthorized" and "401" in str(err.value)
    assert "s3cr3t" not in str(err.value) and "the-right-key" not in str(err.value)
    assert len(es.log) == 1
    good = build_client(es.url, api_key="the-right-key")
    try:
        assert _source(good).read_events(["user1"], LO, HI).scanned > 0
    finally:
        good.close()


class _NotElasticsearch(BaseHTTPRequestHandler):
    """Answers like a cluster, but without the ``X-Elastic-Product`` header any Elasticsearch sends."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = orjson.dumps({"id": "pit-0"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def test_a_server_that_is_not_elasticsearch_is_permanent_and_named() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotElasticsearch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    c = build_client(f"http://127.0.0.1:{server.server_address[1]}", request_timeout_s=5)
    try:
        with pytest.raises(PermanentSourceError, match="not Elasticsearch") as err:
            _source(c).read_events(WANTED, LO, HI)
    finally:
        c.close()
        server.shutdown()
        server.server_close()
    assert err.value.kind == "not_elasticsearch" and not err.value.transient


def test_forbidden_is_permanent(es: EsProtocolServer, client: Elasticsearch) -> None:
    es.faults.forbid()
    with pytest.raises(PermanentSourceError, match="403") as err:
        _source(client).read_events(WANTED, LO, HI)
    assert err.value.kind == "forbidden"


def test_bad_query_is_permanent_and_closes_the_pit(es: EsProtocolServer, client: Elasticsearch) -> None:
    # the "timestamp" field is a keyword here: a range on it is refused (400)
    src = ElasticsearchSource(client, INDEX, FieldNames(timestamp="ecran"), page_size=100, retry=FAST_RETRY)
    with pytest.raises(PermanentSourceError, match="HTTP 400") as err:
        src.read_events(WANTED, LO, HI)
    assert err.value.kind == "bad_request"
    assert len(_searches(es)) == 1 and es.pits_opened == 1 and es.open_pits == 0


@pytest.mark.parametrize("slices", [1, 3])
def test_flaky_cluster_gives_the_identical_result(
    es: EsProtocolServer, client: Elasticsearch, dataset, slices: int
) -> None:
    es.faults.fail_searches(0.3, kinds=(429, 503, "reset"), seed=11)
    acc = _source(client, slices=slices, page_size=40).read_events(WANTED, LO, HI)
    assert _events(acc) == _expected(dataset[0], WANTED)
    assert acc.invalid == len(dataset[1])
    injected = es.faults.injected
    assert injected["429"] > 0 and injected["503"] > 0 and injected["reset"] > 0
    assert es.pits_opened == 1 and es.open_pits == 0


def test_partial_shard_failures_are_retried(es: EsProtocolServer, client: Elasticsearch, dataset) -> None:
    es.faults.partial_failures(0.3, seed=2)
    acc = _source(client).read_events(WANTED, LO, HI)
    assert es.faults.injected["partial"] > 0
    assert _events(acc) == _expected(dataset[0], WANTED)


def test_always_503_gives_up_within_the_time_bound(es: EsProtocolServer, client: Elasticsearch) -> None:
    es.faults.always(503)
    policy = RetryPolicy(max_attempts=1000, max_elapsed_s=1.0, base_delay_s=0.05, max_delay_s=0.2)
    now = [0.0]  # the retries' clock, moved by their sleeps only: the bound is on time waited

    def sleep(seconds: float) -> None:
        now[0] += seconds

    src = _source(client, retry=policy, sleep=sleep, clock=lambda: now[0], rng=random.Random(5))
    with pytest.raises(TransientSourceError, match="unavailable.*HTTP 503") as err:
        src.read_events(WANTED, LO, HI)
    assert 0.5 < now[0] < policy.max_elapsed_s  # waited up to the bound, never past it
    assert err.value.transient and err.value.kind == "unavailable"
    assert 2 <= len(es.log) < 1000  # the time bound ended it, not the count


def test_retries_are_bounded_in_count(es: EsProtocolServer, client: Elasticsearch) -> None:
    es.faults.always("reset")
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=4, max_elapsed_s=60, base_delay_s=0.01, max_delay_s=0.04)
    src = _source(client, retry=policy, sleep=sleeps.append)  # records the backoff instead of waiting
    with pytest.raises(TransientSourceError, match="after 4 attempt"):
        src.read_events(WANTED, LO, HI)
    assert len(es.log) == 4 and len(sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(sleeps, [0.01, 0.02, 0.04]))  # full jitter under the cap


def test_timeouts_are_transient(es: EsProtocolServer) -> None:
    es.faults.delay(1.0, path_contains="_pit")
    c = build_client(es.url, request_timeout_s=0.2)
    try:
        src = _source(c, retry=RetryPolicy(max_attempts=2, max_elapsed_s=10, base_delay_s=0.01), request_timeout_s=0.2)
        with pytest.raises(TransientSourceError, match="ConnectionTimeout"):
            src.read_events(WANTED, LO, HI)
    finally:
        c.close()


def test_expired_pit_restarts_with_an_exact_result(es: EsProtocolServer, client: Elasticsearch, dataset) -> None:
    es.faults.expire_pit_after(3)
    progress: list[int] = []
    acc = _source(client).read_events(WANTED, LO, HI, on_progress=progress.append)
    assert es.faults.injected["pit_expired"] == 1
    assert _events(acc) == _expected(dataset[0], WANTED) and acc.invalid == len(dataset[1])
    assert es.pits_opened == 2 and es.open_pits == 0
    assert progress[:3] == [100, 200, 300] and progress[3] == 100  # the restart counts from zero
    assert progress[-1] == acc.scanned


def test_pit_expiring_every_time_gives_up(es: EsProtocolServer, client: Elasticsearch) -> None:
    es.faults.expire_pit_after(1, times=100)
    with pytest.raises(TransientSourceError, match="expired") as err:
        _source(client, max_restarts=2).read_events(WANTED, LO, HI)
    assert err.value.kind == "pit_expired"
    assert es.pits_opened == 3 and es.open_pits == 0


@pytest.mark.parametrize("slices", [1, 2])
def test_should_stop_raises_stopped_and_closes_the_pit(
    es: EsProtocolServer, client: Elasticsearch, slices: int
) -> None:
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 2 * slices

    with pytest.raises(Stopped):
        _source(client, slices=slices).read_events(WANTED, LO, HI, should_stop=should_stop)
    assert 1 <= len(_searches(es)) <= 2 * slices
    assert es.pits_opened == 1 and es.open_pits == 0


def test_slices_read_the_same_events(es: EsProtocolServer, client: Elasticsearch, dataset) -> None:
    acc = _source(client, slices=4).read_events(WANTED, LO, HI)
    assert _events(acc) == _expected(dataset[0], WANTED)
    bodies = [r.json() for r in _searches(es)]
    assert {b["slice"]["id"] for b in bodies} == {0, 1, 2, 3} and all(b["slice"]["max"] == 4 for b in bodies)
    first_ids = {b["pit"]["id"] for b in bodies if "search_after" not in b}
    assert len(first_ids) == 1  # every slice starts from the same PIT id
    assert es.pits_opened == 1 and es.open_pits == 0


def test_closing_failure_is_logged_not_raised(es: EsProtocolServer, client: Elasticsearch, dataset, caplog) -> None:
    es.faults.expire_pit_after(10**6)  # harmless; then make every DELETE fail
    src = _source(client)

    def stop_after_first_page() -> bool:
        if _searches(es):
            es.faults.always(503)  # the close will fail
            return True
        return False

    with pytest.raises(Stopped):
        src.read_events(WANTED, LO, HI, should_stop=stop_after_first_page)
    assert es.requests("DELETE", "/_pit")[-1].status == 503
    assert "could not close the point in time" in caplog.text


def test_from_settings_uses_credentials_and_field_names(es: EsProtocolServer, tmp_path: Path) -> None:
    es.faults.require_auth(basic=("reader", "pa55word"))
    environ = {
        "ELASTICSEARCH_URL": es.url,
        "ELASTICSEARCH_INDEX": INDEX,
        "ELASTICSEARCH_PAGE_SIZE": "500",
        "ELASTICSEARCH_USERNAME": "reader",
        "ELASTICSEARCH_PASSWORD": "pa55word",
        "SESSIONIZER_CREDENTIALS": str(tmp_path / "none.yml"),
    }
    src = from_settings(load_settings(environ))
    try:
        assert src.page_size == 500 and src.index == INDEX and "pa55word" not in repr(src)
        assert src.read_events(["user3"], LO, HI).scanned > 0
    finally:
        src.client.close()


def test_bulk_load_and_cli(es: EsProtocolServer, client: Elasticsearch, tmp_path: Path, monkeypatch) -> None:
    assert ensure_index(client, "loaded") is True and ensure_index(client, "loaded") is False
    docs = [{"@timestamp": T0 + i, "util": "u", "ecran": "e", "instance": "i"} for i in range(1200)]
    bad = {"@timestamp": "garbage", "util": "u", "ecran": "e", "instance": "i"}
    result = bulk_load(client, "loaded", [*docs[:600], bad, *(orjson.dumps(d) for d in docs[600:])], chunk_size=250)
    assert (result.indexed, result.failed) == (1200, 1)
    assert result.errors[0]["error"]["type"] == "document_parsing_exception"
    assert es.count("loaded") == 1200
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs[:50]) + b'{"@timestamp": "01/02"}\n')
    monkeypatch.delenv("ELASTICSEARCH_API_KEY", raising=False)
    assert es_load_main([str(path), "--index", "cli-events", "--url", es.url]) == 1  # one refused line
    assert es.count("cli-events") == 50
    assert es.index("cli-events").field_types["@timestamp"] == "date"
