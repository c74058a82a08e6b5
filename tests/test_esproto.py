"""The protocol test server speaks Elasticsearch as the official client expects it."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import elastic_transport
import pytest
from elasticsearch import (
    ApiError,
    AuthenticationException,
    BadRequestError,
    Elasticsearch,
    NotFoundError,
    helpers,
)

from esproto import EsProtocolServer, parse_date

INDEX = "usage-events"
MAPPING = {
    "properties": {
        "@timestamp": {"type": "date"},
        "util": {"type": "keyword"},
        "ecran": {"type": "keyword"},
        "instance": {"type": "keyword"},
    }
}
T0 = 1663844400000  # 2022-09-22T11:00:00Z


@pytest.fixture
def es() -> Iterator[EsProtocolServer]:
    with EsProtocolServer() as server:
        yield server


@pytest.fixture
def client(es: EsProtocolServer) -> Iterator[Elasticsearch]:
    c = Elasticsearch(es.url, max_retries=0, request_timeout=5)
    yield c
    c.close()


def _docs(n: int) -> list[dict[str, Any]]:
    return [
        {"@timestamp": T0 + i * 1000, "util": f"u{i % 3}", "ecran": f"e{i % 5}", "instance": "i1"} for i in range(n)
    ]


@pytest.fixture
def loaded(es: EsProtocolServer) -> EsProtocolServer:
    es.create_index(INDEX, MAPPING)
    es.add_documents(INDEX, _docs(100))
    return es


def _raw(es: EsProtocolServer, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", es.port, timeout=5)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def _scan_pit(client: Elasticsearch, pit_id: str, size: int, **extra: Any) -> tuple[list[dict], str]:
    hits_all: list[dict] = []
    after = None
    while True:
        kw: dict[str, Any] = dict(
            pit={"id": pit_id, "keep_alive": "1m"},
            size=size,
            sort=["_doc", "_shard_doc"],
            track_total_hits=False,
            **extra,
        )
        if after is not None:
            kw["search_after"] = after
        resp = client.search(**kw).body
        pit_id = resp.get("pit_id", pit_id)
        hits = resp.get("hits", {}).get("hits", [])
        if not hits:
            return hits_all, pit_id
        hits_all += hits
        after = hits[-1]["sort"]


def test_root_ping_and_product_header_everywhere(es: EsProtocolServer, client: Elasticsearch) -> None:
    info = client.info()
    assert info["version"]["number"].startswith("8.")
    assert info["tagline"] == "You Know, for Search"
    assert client.ping() is True
    for method, path in [("GET", "/"), ("GET", "/nope/_count"), ("DELETE", "/_pit")]:
        resp = _raw(es, method, path, b'{"id": "bm9wZQ=="}' if method == "DELETE" else None)
        assert resp.getheader("X-Elastic-Product") == "Elasticsearch", (method, path, resp.status)
    assert _raw(es, "GET", "/nope/_count").status == 404
    # the client's compat header gets the vnd content type back
    assert es.log[0].headers["accept"].startswith("application/vnd.elasticsearch+json")
    assert client.info().meta.headers["content-type"].startswith("application/vnd.elasticsearch+json")


def test_rejects_compatible_with_9(es: EsProtocolServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", es.port, timeout=5)
    conn.request("GET", "/", headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=9"})
    resp = conn.getresponse()
    assert resp.status == 400 and b"media_type_header_exception" in resp.read()
    conn.close()


def test_create_index_twice_and_exists(es: EsProtocolServer, client: Elasticsearch) -> None:
    assert client.indices.create(index=INDEX, mappings=MAPPING)["acknowledged"] is True
    assert client.indices.exists(index=INDEX)
    assert not client.indices.exists(index="other")
    with pytest.raises(BadRequestError) as err:
        client.indices.create(index=INDEX, mappings=MAPPING)
    assert err.value.error == "resource_already_exists_exception"
    assert client.indices.get_mapping(index=INDEX)[INDEX]["mappings"]["properties"]["@timestamp"] == {"type": "date"}


def test_bulk_items_and_count(es: EsProtocolServer, client: Elasticsearch) -> None:
    client.indices.create(index=INDEX, mappings=MAPPING)
    good = _docs(10)
    bad = {"@timestamp": "not a date", "util": "u0", "ecran": "e", "instance": "i"}
    actions = [{"_index": INDEX, "_source": d} for d in good] + [{"_index": INDEX, "_source": bad}]
    ok, errors = helpers.bulk(client, actions, raise_on_error=False)
    assert ok == 10
    assert len(errors) == 1 and errors[0]["index"]["status"] == 400
    assert errors[0]["index"]["error"]["type"] == "document_parsing_exception"
    assert client.count(index=INDEX)["count"] == 10
    bulk_req = es.requests(path_contains="_bulk")[0]
    assert bulk_req.method == "PUT"
    assert bulk_req.headers["content-type"].startswith("application/vnd.elasticsearch+x-ndjson")
    # index-level bulk path, explicit ids, create conflict
    resp = client.bulk(index=INDEX, operations=[{"create": {"_id": "a"}}, good[0], {"create": {"_id": "a"}}, good[1]])
    assert resp["errors"] is True
    assert [i["create"]["status"] for i in resp["items"]] == [201, 409]
    assert es.requests(path_contains=f"/{INDEX}/_bulk")
    assert client.count(index=INDEX, query={"term": {"util": "u0"}})["count"] == 5


def test_source_comes_back_exactly_as_indexed(es: EsProtocolServer, client: Elasticsearch) -> None:
    client.indices.create(index=INDEX, mappings=MAPPING)
    doc = {"@timestamp": T0, "util": "01", "ecran": "connexion", "instance": "instance589", "extra": {"x": 1.50}}
    client.index(index=INDEX, id="d1", document=doc)
    got = client.search(index=INDEX, query={"match_all": {}})["hits"]["hits"][0]
    assert got["_source"] == doc and type(got["_source"]["@timestamp"]) is int
    assert got["_id"] == "d1"
    filtered = client.search(index=INDEX, source=["@timestamp", "util"], query={"match_all": {}})
    assert filtered["hits"]["hits"][0]["_source"] == {"@timestamp": T0, "util": "01"}


def test_pit_paging_is_exact_snapshot_and_closable(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    es = loaded
    pit_id = client.open_point_in_time(index=INDEX, keep_alive="1m")["id"]
    assert es.open_pits == 1
    es.add_documents(INDEX, _docs(5))  # indexed after the PIT opened: not seen
    hits, pit_id = _scan_pit(client, pit_id, size=7)
    assert len(hits) == 100
    slots = [h["sort"][0] for h in hits]
    assert slots == sorted(slots) and len(set(slots)) == 100
    assert all(len(h["sort"]) == 2 and h["sort"][1] != h["sort"][0] for h in hits)
    assert client.close_point_in_time(id=pit_id)["num_freed"] == 1
    assert es.open_pits == 0 and es.pits_closed == 1
    with pytest.raises(NotFoundError):
        client.close_point_in_time(id=pit_id)
    assert client.count(index=INDEX)["count"] == 105


def test_pit_ids_change_and_search_after_must_match_sort(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    pit_id = client.open_point_in_time(index=INDEX, keep_alive="1m")["id"]
    resp = client.search(pit={"id": pit_id, "keep_alive": "1m"}, size=3, sort=["_doc", "_shard_doc"])
    assert resp["pit_id"] != pit_id
    assert "total" in resp["hits"]  # tracked by default
    with pytest.raises(BadRequestError):  # only the first sort value sent back
        client.search(
            pit={"id": resp["pit_id"]},
            size=3,
            sort=["_doc", "_shard_doc"],
            search_after=resp["hits"]["hits"][-1]["sort"][:1],
        )
    with pytest.raises(BadRequestError) as err:  # an index in the path together with a PIT
        client.search(index=INDEX, pit={"id": resp["pit_id"]}, size=3)
    assert err.value.error == "action_request_validation_exception"
    client.close_point_in_time(id=resp["pit_id"])


def test_pit_keep_alive_expires(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    pit_id = client.open_point_in_time(index=INDEX, keep_alive="30s")["id"]
    loaded.advance_time(31)
    with pytest.raises(NotFoundError) as err:
        client.search(pit={"id": pit_id, "keep_alive": "30s"}, size=3)
    types = [c["type"] for c in err.value.body["error"]["root_cause"]]
    assert types == ["search_context_missing_exception"]
    assert loaded.open_pits == 0


def test_slices_partition_the_pit(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    pit_id = client.open_point_in_time(index=INDEX, keep_alive="1m")["id"]
    seen: list[int] = []
    for i in range(3):
        hits, _ = _scan_pit(client, pit_id, size=10, slice={"id": i, "max": 3})
        assert hits
        seen += [h["sort"][0] for h in hits]
    assert sorted(seen) == list(range(100))
    with pytest.raises(BadRequestError):
        client.search(pit={"id": pit_id}, slice={"id": 0, "max": 1})
    client.close_point_in_time(id=pit_id)


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"gte": T0 + 10_000, "lte": T0 + 19_000}, 10),  # epoch ms, inclusive
        ({"gt": T0 + 10_000, "lt": T0 + 19_000}, 8),
        ({"gte": "2022-09-22T13:00:10+02:00", "lte": "2022-09-22T11:00:19.000Z"}, 10),  # ISO with offsets
        ({"gte": "2022-09-22T11:00:10", "lte": "2022-09-22T11:00:19.000", "format": "strict_date_optional_time"}, 10),
        ({"lte": "2022-09-22T11:00:19"}, 20),  # no milliseconds: lte rounds up to .999 as in ES
        ({"gte": "2022-09-22", "lte": "2022-09-22"}, 100),  # a whole day
        ({"gte": "2022-09-23"}, 0),
    ],
)
def test_range_on_dates(loaded: EsProtocolServer, client: Elasticsearch, bounds: dict, expected: int) -> None:
    resp = client.count(index=INDEX, query={"bool": {"filter": [{"range": {"@timestamp": bounds}}]}})
    assert resp["count"] == expected


def test_bool_terms_term_and_must_not(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    q = {"bool": {"must": [{"terms": {"util": ["u1", "u2", "zz"]}}], "must_not": [{"term": {"ecran": "e0"}}]}}
    expected = sum(1 for i in range(100) if i % 3 in (1, 2) and i % 5 != 0)
    assert client.count(index=INDEX, query=q)["count"] == expected
    assert client.count(index=INDEX, query={"match_all": {}})["count"] == 100
    assert client.count(index=INDEX, query={"term": {"missing_field": "x"}})["count"] == 0


def test_string_dates_and_numbers_compared_as_epoch_ms(es: EsProtocolServer, client: Elasticsearch) -> None:
    client.indices.create(index=INDEX, mappings=MAPPING)
    es.add_documents(
        INDEX,
        [
            {"@timestamp": "2022-09-22T13:00:00+02:00", "util": "a", "ecran": "e", "instance": "i"},
            {"@timestamp": T0, "util": "b", "ecran": "e", "instance": "i"},
            {"@timestamp": "2022-09-22T11:00:00.001Z", "util": "c", "ecran": "e", "instance": "i"},
        ],
    )
    resp = client.search(index=INDEX, query={"range": {"@timestamp": {"lte": T0}}}, sort=[{"@timestamp": "asc"}])
    assert sorted(h["_source"]["util"] for h in resp["hits"]["hits"]) == ["a", "b"]
    assert parse_date("2022-09-22T13:00:00+02:00") == T0


def test_filter_path_and_zero_hits(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    pit_id = client.open_point_in_time(index=INDEX, keep_alive="1m")["id"]
    fp = "pit_id,hits.hits._source,hits.hits.sort"
    resp = client.search(pit={"id": pit_id}, size=2, sort=["_doc", "_shard_doc"], filter_path=fp).body
    assert set(resp) == {"pit_id", "hits"} and set(resp["hits"]["hits"][0]) == {"_source", "sort"}
    empty = client.search(pit={"id": resp["pit_id"]}, query={"term": {"util": "nobody"}}, filter_path=fp).body
    assert empty == {}
    client.close_point_in_time(id=resp["pit_id"])


def test_bad_query_and_missing_index(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    with pytest.raises(BadRequestError):
        client.search(index=INDEX, query={"no_such_query": {}})
    with pytest.raises(BadRequestError) as err:
        client.search(index=INDEX, query={"range": {"@timestamp": {"gte": "yesterday-ish"}}})
    assert err.value.error == "search_phase_execution_exception"
    with pytest.raises(NotFoundError) as err:
        client.open_point_in_time(index="nope", keep_alive="1m")
    assert err.value.error == "index_not_found_exception"


def test_scroll_with_helpers_scan(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    docs = list(helpers.scan(client, index=INDEX, query={"query": {"term": {"util": "u0"}}}, size=7))
    assert len(docs) == 34
    assert loaded.open_scrolls == 0  # helpers.scan cleared it
    assert loaded.requests("DELETE", "/_search/scroll")


def test_faults_429_503_and_reset(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    es = loaded
    es.faults.always(429)
    with pytest.raises(ApiError) as err:
        client.search(index=INDEX)
    assert err.value.meta.status == 429 and err.value.error == "es_rejected_execution_exception"
    es.faults.always(503)
    with pytest.raises(ApiError) as err:
        client.count(index=INDEX)
    assert err.value.meta.status == 503
    es.faults.reset()
    es.faults.fail_searches(1.0, kinds=["reset"])
    with pytest.raises(elastic_transport.ConnectionError):
        client.search(index=INDEX)
    es.faults.fail_searches(0.5, kinds=[429], seed=3)
    statuses = []
    for _ in range(40):
        try:
            client.search(index=INDEX, size=1)
            statuses.append(200)
        except ApiError as exc:
            statuses.append(exc.meta.status)
    assert 5 < statuses.count(429) < 35 and statuses.count(200) > 5
    assert es.faults.injected["429"] == statuses.count(429)


def test_pit_expires_after_pages(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    loaded.faults.expire_pit_after(2)
    pit_id = client.open_point_in_time(index=INDEX, keep_alive="1m")["id"]
    for _ in range(2):
        pit_id = client.search(pit={"id": pit_id}, size=1)["pit_id"]
    with pytest.raises(NotFoundError):
        client.search(pit={"id": pit_id}, size=1)
    other = client.open_point_in_time(index=INDEX, keep_alive="1m")["id"]  # only the first PIT expires
    for _ in range(4):
        other = client.search(pit={"id": other}, size=1)["pit_id"]
    client.close_point_in_time(id=other)


def test_auth_required(loaded: EsProtocolServer) -> None:
    es = loaded
    es.faults.require_auth(api_key=("kid", "secret"), basic=("elastic", "changeme"))
    anonymous = Elasticsearch(es.url, max_retries=0)
    with pytest.raises(AuthenticationException) as err:
        anonymous.count(index=INDEX)
    assert err.value.error == "security_exception"
    wrong = Elasticsearch(es.url, basic_auth=("elastic", "wrong"), max_retries=0)
    with pytest.raises(AuthenticationException):
        wrong.count(index=INDEX)
    for c in (
        Elasticsearch(es.url, api_key=("kid", "secret")),
        Elasticsearch(es.url, basic_auth=("elastic", "changeme")),
    ):
        assert c.count(index=INDEX)["count"] == 100
        c.close()
    anonymous.close()
    wrong.close()


def test_request_log_has_headers_and_bodies(loaded: EsProtocolServer, client: Elasticsearch) -> None:
    client.search(index=INDEX, query={"term": {"util": "u1"}}, size=1, filter_path="hits.hits._id")
    req = loaded.requests("POST", "/_search")[-1]
    assert req.path == f"/{INDEX}/_search"
    assert req.query["filter_path"] == "hits.hits._id"
    assert req.json()["query"] == {"term": {"util": "u1"}}
    assert req.headers["content-type"].startswith("application/vnd.elasticsearch+json")
    assert req.status == 200
