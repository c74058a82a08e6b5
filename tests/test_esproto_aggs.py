"""The composite aggregation, late and deleted documents, and the sent-hits counter of the protocol
test server, through the official client; and ``ElasticsearchSource.day_counts`` against it."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError, helpers

from esproto import EsProtocolServer
from worker.sources.base import PermanentSourceError
from worker.sources.documents import FieldNames
from worker.sources.elasticsearch import DAY_COUNTS_PAGE, ElasticsearchSource
from worker.sources.es_client import build_client
from worker.sources.es_load import mapping
from worker.sources.es_retry import RetryPolicy

INDEX = "usage-events"
DAY = 86_400_000
D0 = 1662681600000  # 2022-09-09T00:00:00Z
USERS = [f"user{i:02d}" for i in range(12)]
FAST_RETRY = RetryPolicy(max_attempts=10, max_elapsed_s=20.0, base_delay_s=0.001, max_delay_s=0.01)


def _ms(value: Any) -> int:
    return value if isinstance(value, int) else int(datetime.fromisoformat(value).timestamp() * 1000)


def _utc_day(ms: int) -> int:
    """The UTC midnight before ``ms``, the calendar way (independent of the server's arithmetic)."""
    day = datetime.fromtimestamp(ms / 1000, UTC).date()
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _docs(n: int, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = D0 + rng.randrange(20 * DAY)
        # a third as ISO strings with offsets: the day is the UTC one, not the local one
        ts: Any = (
            t
            if i % 3
            else datetime.fromtimestamp(t / 1000, timezone(timedelta(hours=rng.choice([-5, 2, 9])))).isoformat()
        )
        out.append({"@timestamp": ts, "util": rng.choice(USERS), "ecran": "e", "instance": "i"})
    for t in (D0 + 3 * DAY - 1, D0 + 3 * DAY):  # the last ms of a day and the first of the next
        out.append({"@timestamp": t, "util": "user01", "ecran": "edge", "instance": "i"})
    return out


def _expected(
    docs: list[dict[str, Any]], users: list[str] | None = None, lo: int | None = None, hi: int | None = None
) -> dict[tuple[str, int], int]:
    got: Counter[tuple[str, int]] = Counter()
    for d in docs:
        t = _ms(d["@timestamp"])
        if (users is None or d["util"] in users) and (lo is None or t >= lo) and (hi is None or t <= hi):
            got[(d["util"], _utc_day(t))] += 1
    return dict(got)


def _composite(size: int, after: dict | None = None, **day: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "size": size,
        "sources": [
            {"user": {"terms": {"field": "util"}}},
            {
                "day": {
                    "date_histogram": {
                        "field": "@timestamp",
                        **(day or {"calendar_interval": "1d", "time_zone": "UTC"}),
                    }
                }
            },
        ],
    }
    if after is not None:
        spec["after"] = after
    return {"per_user_day": {"composite": spec}}


def _pages(client: Elasticsearch, size: int, query: dict | None = None, **kw: Any) -> list[dict[str, Any]]:
    """Every page of the composite aggregation, the last (empty) one included."""
    pages, after = [], None
    while True:
        resp = client.search(
            index=INDEX,
            size=0,
            track_total_hits=False,
            query=query or {"match_all": {}},
            aggs=_composite(size, after),
            **kw,
        ).body
        agg = resp.get("aggregations", {}).get("per_user_day", {})
        pages.append(agg)
        if not agg.get("buckets"):
            return pages
        after = agg["after_key"]


def _counts(pages: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    out = {}
    for page in pages:
        for b in page.get("buckets", []):
            out[(b["key"]["user"], b["key"]["day"])] = b["doc_count"]
    return out


@pytest.fixture
def es() -> Iterator[EsProtocolServer]:
    with EsProtocolServer() as server:
        server.create_index(INDEX, mapping())
        yield server


@pytest.fixture
def client(es: EsProtocolServer) -> Iterator[Elasticsearch]:
    c = Elasticsearch(es.url, max_retries=0, request_timeout=5)
    yield c
    c.close()


@pytest.fixture
def docs(client: Elasticsearch) -> list[dict[str, Any]]:
    out = _docs(600)
    ok, _ = helpers.bulk(
        client, [{"_index": INDEX, "_id": f"d{i}", "_source": d} for i, d in enumerate(out)], refresh=True
    )
    assert ok == len(out)
    return out


def test_composite_pages_by_after_key_and_counts_every_document(client: Elasticsearch, docs) -> None:
    pages = _pages(client, size=17)
    expected = _expected(docs)
    assert len(pages) == -(-len(expected) // 17) + 1  # full pages, then the empty one
    assert _counts(pages) == expected
    keys = [(b["key"]["user"], b["key"]["day"]) for p in pages for b in p["buckets"]]
    assert keys == sorted(expected)  # user ascending, then day ascending
    for page in pages[:-1]:
        assert len(page["buckets"]) <= 17 and page["after_key"] == page["buckets"][-1]["key"]
        assert all(set(b) == {"key", "doc_count"} and b["key"]["day"] % DAY == 0 for b in page["buckets"])
    assert pages[-1] == {"buckets": []}  # no after_key on the page past the end
    assert expected[("user01", D0 + 2 * DAY)] >= 1 and expected[("user01", D0 + 3 * DAY)] >= 1


def test_composite_filters_by_users_and_range(client: Elasticsearch, docs) -> None:
    users, lo, hi = ["user03", "user07", "nobody"], D0 + 2 * DAY + 5, D0 + 9 * DAY + 123
    query = {
        "bool": {
            "filter": [
                {"terms": {"util": users}},
                {"range": {"@timestamp": {"gte": lo, "lte": hi, "format": "epoch_millis"}}},
            ]
        }
    }
    got = _counts(_pages(client, size=4, query=query))
    assert got == _expected(docs, users, lo, hi) and {u for u, _ in got} == {"user03", "user07"}


def test_late_and_deleted_documents_change_the_counts(es: EsProtocolServer, client: Elasticsearch, docs) -> None:
    before = _counts(_pages(client, size=50))
    late = [
        {"@timestamp": D0 + 4 * DAY + 60_000 * i, "util": "user02", "ecran": "e", "instance": "i"} for i in range(5)
    ] + [{"@timestamp": D0 + 40 * DAY, "util": "newcomer", "ecran": "e", "instance": "i"}]
    resp = client.bulk(index=INDEX, operations=[op for d in late for op in ({"index": {}}, d)], refresh=True)
    assert not resp["errors"] and all(item["index"]["forced_refresh"] for item in resp["items"])
    gone = client.delete_by_query(
        index=INDEX,
        query={
            "bool": {
                "filter": [
                    {"term": {"util": "user05"}},
                    {"range": {"@timestamp": {"gte": D0 + 6 * DAY, "lt": D0 + 8 * DAY}}},
                ]
            }
        },
    )
    assert gone["deleted"] == gone["total"] > 0 and gone["failures"] == []
    assert client.delete(index=INDEX, id="d0")["result"] == "deleted"
    with pytest.raises(NotFoundError):
        client.delete(index=INDEX, id="d0")
    kept = [
        d
        for i, d in enumerate(docs)
        if i != 0 and not (d["util"] == "user05" and D0 + 6 * DAY <= _ms(d["@timestamp"]) < D0 + 8 * DAY)
    ]
    after = _counts(_pages(client, size=50))
    assert after == _expected(kept + late) != before
    assert after[("user02", D0 + 4 * DAY)] == before.get(("user02", D0 + 4 * DAY), 0) + 5
    assert after[("newcomer", D0 + 40 * DAY)] == 1
    assert ("user05", D0 + 6 * DAY) not in after and ("user05", D0 + 7 * DAY) not in after
    assert client.count(index=INDEX)["count"] == sum(after.values())


def test_filter_path_total_hits_and_typed_keys(client: Elasticsearch, docs) -> None:
    fp = "aggregations.per_user_day.after_key,aggregations.per_user_day.buckets.key"
    resp = client.search(index=INDEX, size=0, aggs=_composite(3), filter_path=fp).body
    assert set(resp) == {"aggregations"} and set(resp["aggregations"]["per_user_day"]) == {"after_key", "buckets"}
    assert all(set(b) == {"key"} for b in resp["aggregations"]["per_user_day"]["buckets"])
    full = client.search(index=INDEX, size=0, aggs=_composite(3)).body  # total tracked by default
    assert full["hits"] == {"total": {"value": len(docs), "relation": "eq"}, "max_score": None, "hits": []}
    untracked = client.search(index=INDEX, size=0, track_total_hits=False, aggs=_composite(3)).body
    assert untracked["hits"] == {"max_score": None, "hits": []}
    assert list(untracked)[-1] == "aggregations"
    nobody = {"term": {"util": "nobody"}}
    whole = client.search(
        index=INDEX, size=0, query=nobody, aggs=_composite(3), filter_path="aggregations.per_user_day.buckets"
    ).body
    assert whole == {"aggregations": {"per_user_day": {"buckets": []}}}  # a whole matched value stays
    inner = client.search(
        index=INDEX, size=0, query=nobody, aggs=_composite(3), filter_path="aggregations.per_user_day.buckets.key"
    ).body
    assert inner == {}  # nothing inside: filter_path leaves nothing, as for zero hits
    typed = client.search(index=INDEX, size=0, aggs=_composite(3), typed_keys=True).body
    assert list(typed["aggregations"]) == ["composite#per_user_day"]
    # `aggregations` is the long name of `aggs`; hits come along when size > 0
    both = client.search(index=INDEX, body={"size": 2, "aggregations": _composite(2)}).body
    assert len(both["hits"]["hits"]) == 2 and len(both["aggregations"]["per_user_day"]["buckets"]) == 2


def test_sources_order_missing_bucket_intervals_and_zones(es: EsProtocolServer, client: Elasticsearch) -> None:
    t = D0 + 22 * 3_600_000  # 22:00 UTC, i.e. 00:00 the next day at +02:00; D0 is a Friday
    es.add_documents(
        INDEX,
        [
            {"@timestamp": t, "util": "b"},
            {"@timestamp": t + 3 * DAY, "util": "a"},
            {"@timestamp": t, "ecran": "no user"},
            {"util": "a", "ecran": "no time"},
        ],
    )

    def buckets(user: dict, day: dict) -> list[tuple]:
        agg = {
            "x": {
                "composite": {
                    "size": 10,
                    "sources": [
                        {"u": {"terms": {"field": "util", **user}}},
                        {"d": {"date_histogram": {"field": "@timestamp", **day}}},
                    ],
                }
            }
        }
        got = client.search(index=INDEX, size=0, aggs=agg)["aggregations"]["x"]["buckets"]
        return [(b["key"]["u"], b["key"]["d"], b["doc_count"]) for b in got]

    day = {"calendar_interval": "day"}
    assert buckets({}, day) == [("a", D0 + 3 * DAY, 1), ("b", D0, 1)]
    assert buckets({"order": "desc"}, day) == [("b", D0, 1), ("a", D0 + 3 * DAY, 1)]
    assert buckets({"missing_bucket": True}, day) == [(None, D0, 1), ("a", D0 + 3 * DAY, 1), ("b", D0, 1)]
    assert buckets({"missing_bucket": True, "order": "desc"}, day)[-1] == (None, D0, 1)
    assert buckets({}, {"calendar_interval": "1d", "time_zone": "+02:00"}) == [
        ("a", D0 + 4 * DAY - 2 * 3_600_000, 1),
        ("b", D0 + DAY - 2 * 3_600_000, 1),
    ]
    assert buckets({}, {"fixed_interval": "12h"}) == [("a", D0 + 3 * DAY + DAY // 2, 1), ("b", D0 + DAY // 2, 1)]
    monday = D0 - 4 * DAY  # 2022-09-05
    assert buckets({}, {"calendar_interval": "1w"}) == [("a", monday + 7 * DAY, 1), ("b", monday, 1)]
    # an `after` that is no bucket key lands between two keys
    agg = _composite(10, after={"user": "aa", "day": 0})
    got = client.search(index=INDEX, size=0, aggs=agg)["aggregations"]["per_user_day"]["buckets"]
    assert [b["key"]["user"] for b in got] == ["b"]


@pytest.mark.parametrize(
    ("aggs", "error", "root"),
    [
        ({"x": {"no_such_agg": {}}}, "parsing_exception", "parsing_exception"),
        ({"x": {"avg": {"field": "n"}}}, "illegal_argument_exception", "illegal_argument_exception"),
        (
            {"x": {"composite": {"sources": [{"u": {"terms": {"field": "util"}}}], "after": {"u": "a", "v": 1}}}},
            "illegal_argument_exception",
            "illegal_argument_exception",
        ),
        (
            {
                "x": {
                    "composite": {
                        "sources": [{"d": {"date_histogram": {"field": "@timestamp", "calendar_interval": "2d"}}}]
                    }
                }
            },
            "illegal_argument_exception",
            "illegal_argument_exception",
        ),
        (
            {"x": {"composite": {"sources": [{"d": {"date_histogram": {"field": "util", "fixed_interval": "1d"}}}]}}},
            "search_phase_execution_exception",
            "illegal_argument_exception",
        ),
        (
            {"x": {"composite": {"sources": [{"u": {"terms": {"field": "util"}}}], "page": 3}}},
            "x_content_parse_exception",
            "x_content_parse_exception",
        ),
    ],
)
def test_aggregation_errors_are_400s(client: Elasticsearch, docs, aggs: dict, error: str, root: str) -> None:
    with pytest.raises(BadRequestError) as err:
        client.search(index=INDEX, size=0, aggs=aggs)
    assert err.value.error == error
    assert err.value.body["error"]["root_cause"][0]["type"] == root


def test_text_field_terms_source_is_refused(es: EsProtocolServer, client: Elasticsearch) -> None:
    es.create_index("texts", {"properties": {"note": {"type": "text"}}})
    es.add_documents("texts", [{"note": "hello"}])
    with pytest.raises(BadRequestError) as err:
        client.search(
            index="texts", size=0, aggs={"x": {"composite": {"sources": [{"n": {"terms": {"field": "note"}}}]}}}
        )
    assert "Fielddata is disabled on [note]" in err.value.body["error"]["root_cause"][0]["reason"]


def test_hits_sent_counts_documents_in_search_answers(es: EsProtocolServer, client: Elasticsearch, docs) -> None:
    es.reset_counters()
    assert es.hits_sent == 0
    _pages(client, size=100)
    assert es.hits_sent == 0 and es.searches_with_aggs > 0  # aggregations only: no document sent
    client.search(index=INDEX, size=7)
    pit = client.open_point_in_time(index=INDEX, keep_alive="1m")["id"]
    resp = client.search(pit={"id": pit}, size=250, sort=["_doc"], filter_path="pit_id,hits.hits._id")
    client.close_point_in_time(id=resp["pit_id"])
    list(helpers.scan(client, index=INDEX, size=100, query={"query": {"term": {"util": "user04"}}}))
    user04 = sum(1 for d in docs if d["util"] == "user04")
    assert es.hits_sent == 7 + 250 + user04
    client.search(index=INDEX, size=5, filter_path="hits.total")  # hits filtered out: none sent
    assert es.hits_sent == 7 + 250 + user04
    es.reset_counters()
    assert (es.hits_sent, es.searches_with_aggs, es.pits_opened) == (0, 0, 0)


# ---------------------------------------------------------------------- ElasticsearchSource.day_counts
@pytest.fixture
def source_client(es: EsProtocolServer) -> Iterator[Elasticsearch]:
    c = build_client(es.url, request_timeout_s=5)
    yield c
    c.close()


def _source(client: Elasticsearch) -> ElasticsearchSource:
    return ElasticsearchSource(client, INDEX, FieldNames(), page_size=100, retry=FAST_RETRY)


def test_day_counts_over_more_buckets_than_one_page(es: EsProtocolServer, source_client: Elasticsearch) -> None:
    users = [f"u{i:03d}" for i in range(101)]
    # 101 users x 100 days, 1 to 3 documents a day: 10,100 buckets, more than one page of 10,000
    docs = [
        {"@timestamp": D0 + d * DAY + (k * 7_919_000) % DAY, "util": u, "ecran": "e", "instance": "i"}
        for i, u in enumerate(users)
        for d in range(100)
        for k in range(1 + (i + d) % 3)
    ]
    es.add_documents(INDEX, docs)
    es.add_documents(INDEX, [{"@timestamp": D0 + DAY, "util": "other", "ecran": "e", "instance": "i"}])
    es.reset_counters()
    got = _source(source_client).day_counts(users + ["ghost"], D0, D0 + 100 * DAY - 1)
    assert len(got) == 101 * 100 > DAY_COUNTS_PAGE
    assert got == _expected(docs)
    assert es.hits_sent == 0
    searches = es.requests("POST", "/_search")
    assert len(searches) == 3  # two pages, then the empty one
    body = searches[0].json()
    assert body["size"] == 0 and body["track_total_hits"] is False
    assert body["query"] == _source(source_client).query(sorted(users + ["ghost"]), D0, D0 + 100 * DAY - 1)
    comp = body["aggs"]["per_user_day"]["composite"]
    assert comp["size"] == DAY_COUNTS_PAGE and "after" not in comp
    assert comp["sources"][1]["day"]["date_histogram"] == {
        "field": "@timestamp",
        "calendar_interval": "1d",
        "time_zone": "UTC",
    }
    assert "aggregations.per_user_day.after_key" in searches[0].query["filter_path"]
    assert searches[1].json()["aggs"]["per_user_day"]["composite"]["after"] == {"user": "u099", "day": D0 + 99 * DAY}


def test_day_counts_range_is_inclusive_and_follows_changes(es: EsProtocolServer, source_client: Elasticsearch) -> None:
    docs = _docs(400, seed=9)
    es.add_documents(INDEX, docs, ids=[f"d{i}" for i in range(len(docs))])
    src = _source(source_client)
    lo, hi = D0 + 3 * DAY - 1, D0 + 11 * DAY  # both edges inclusive
    wanted = ["user01", "user04", "user09"]
    assert src.day_counts(wanted, lo, hi) == _expected(docs, wanted, lo, hi)
    assert src.day_counts(wanted, lo, hi)[("user01", D0 + 2 * DAY)] == 1  # only the day's last ms is in range
    es.add_documents(INDEX, [{"@timestamp": hi, "util": "user04", "ecran": "e", "instance": "i"}])
    es.delete_documents(INDEX, [f"d{i}" for i, d in enumerate(docs) if d["util"] == "user09"])
    changed = src.day_counts(wanted, lo, hi)
    assert changed == _expected(
        [d for d in docs if d["util"] != "user09"] + [{"@timestamp": hi, "util": "user04"}], wanted, lo, hi
    )
    assert not any(u == "user09" for u, _ in changed)
    assert src.day_counts([], lo, hi) == {} and src.day_counts(wanted, hi, lo) == {}


def test_day_counts_retries_a_transient_503(es: EsProtocolServer, source_client: Elasticsearch) -> None:
    docs = _docs(300, seed=3)
    es.add_documents(INDEX, docs)
    es.faults.fail_searches(0.5, kinds=(503,), seed=1)
    got = _source(source_client).day_counts(USERS, D0, D0 + 30 * DAY)
    assert es.faults.injected["503"] > 0
    assert got == _expected(docs, USERS, D0, D0 + 30 * DAY)


def test_day_counts_partial_results_are_retried(es: EsProtocolServer, source_client: Elasticsearch) -> None:
    docs = _docs(300, seed=4)
    es.add_documents(INDEX, docs)
    es.faults.partial_failures(0.5, seed=1)
    got = _source(source_client).day_counts(USERS, D0, D0 + 30 * DAY)
    assert es.faults.injected["partial"] > 0
    assert got == _expected(docs, USERS, D0, D0 + 30 * DAY)


def test_day_counts_bad_field_is_permanent(es: EsProtocolServer, source_client: Elasticsearch) -> None:
    es.add_documents(INDEX, _docs(10))
    src = ElasticsearchSource(source_client, INDEX, FieldNames(timestamp="ecran"), retry=FAST_RETRY)
    with pytest.raises(PermanentSourceError) as err:  # a keyword "timestamp": the range is refused
        src.day_counts(USERS, D0, D0 + DAY)
    assert err.value.kind == "bad_request"
    assert len(es.requests("POST", "/_search")) == 1
