"""The Elasticsearch side of the event store, against the protocol test server (esproto) through
the official client: every case gives exactly what a cold full scan gives, and the server sends
only what the store lacks."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from esproto import EsProtocolServer
from worker.eventstore import budget
from worker.eventstore.days import DAY_MS, stripe_lock
from worker.sources.accumulator import EventAccumulator
from worker.sources.elasticsearch import ElasticsearchSource
from worker.sources.es_load import mapping
from worker.sources.es_store import StoredElasticsearchSource

INDEX = "usage-events"
D0 = 1662681600000  # 2022-09-09T00:00:00Z
USERS = [f"user{i}" for i in range(6)]
IDENTITY = "a" * 64


def _docs(seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(3000):
        t = D0 + rng.randrange(20 * DAY_MS)
        ts: Any = (
            t if i % 3 else datetime.fromtimestamp(t / 1000, timezone(timedelta(hours=rng.choice([-5, 2])))).isoformat()
        )
        doc = {
            "@timestamp": ts,
            "util": rng.choice(USERS),
            "ecran": f"s{rng.randrange(12)}",
            "instance": f"i{rng.randrange(3)}",
        }
        if i % 101 == 0:
            del doc["ecran"]  # refused by the event rules, counted as invalid
        out.append(doc)
    return out


@pytest.fixture
def es() -> Iterator[EsProtocolServer]:
    with EsProtocolServer() as server:
        server.create_index(INDEX, mapping())
        yield server


@pytest.fixture
def client(es: EsProtocolServer) -> Iterator[Elasticsearch]:
    c = Elasticsearch(es.url, max_retries=0, request_timeout=10)
    helpers.bulk(c, [{"_index": INDEX, "_id": f"d{i}", "_source": d} for i, d in enumerate(_docs())], refresh=True)
    yield c
    c.close()


def stored(
    client: Elasticsearch,
    store: Path,
    *,
    identity: str = IDENTITY,
    settle_s: float = 0.0,
    now_ms: int = D0 + 400 * DAY_MS,
    max_bytes: int = 0,
) -> StoredElasticsearchSource:
    return StoredElasticsearchSource(
        ElasticsearchSource(client, INDEX),
        store,
        identity,
        settle_s=settle_s,
        max_bytes=max_bytes,
        clock=lambda: now_ms / 1000,
    )


def outcome(acc: EventAccumulator, users: list[str]) -> tuple[dict[str, list[tuple]], int, int]:
    screens, instances = acc.vocabulary()
    events = {}
    for u in users:
        ev = acc.pop_user(u)
        events[u] = sorted(zip(ev.t_ms.tolist(), [screens[c] for c in ev.screen], [instances[c] for c in ev.instance]))
    return events, acc.invalid, acc.scanned


def cold(client: Elasticsearch, users: list[str], lo: int, hi: int) -> tuple[dict[str, list[tuple]], int, int]:
    """A cold full scan: the plain source, no store."""
    return outcome(ElasticsearchSource(client, INDEX).read_events(users, lo, hi), users)


def sent(es: EsProtocolServer, fn: Any) -> tuple[Any, int, int]:
    """``fn()``, the documents the server sent meanwhile and the pages of the verification request
    it answered (a page of buckets, then the empty page that proves the end)."""
    es.reset_counters()
    result = fn()
    return result, es.hits_sent, es.searches_with_aggs


LO, HI = D0 + 2 * DAY_MS + 3_600_000, D0 + 9 * DAY_MS + 7_200_000


def test_repeat_overlap_and_extension_read_only_what_is_new(
    es: EsProtocolServer, client: Elasticsearch, tmp_path: Path
) -> None:
    users = USERS[:4] + ["nobody"]
    src = stored(client, tmp_path)
    want = cold(client, users, LO, HI)
    assert want[1] > 0  # refused documents are in the range
    acc, n_cold, aggs = sent(es, lambda: src.read_events(users, LO, HI))
    assert outcome(acc, users) == want and aggs == 0  # nothing stored yet: no verification
    assert n_cold >= want[2] and acc.from_source == n_cold  # whole days: a little more than the range
    assert not src.days._user_dir("nobody").exists()  # a name without events gets no day files
    # a repeat: the verification request only, nothing sent
    acc, n, aggs = sent(es, lambda: src.read_events(users, LO, HI))
    assert outcome(acc, users) == want and (n, aggs) == (0, 2) and acc.from_source == 0
    # an overlap and an extension: only the days not read before
    for lo, hi in ((LO - 2 * DAY_MS, HI - DAY_MS), (LO, HI + 3 * DAY_MS)):
        acc, n, aggs = sent(es, lambda lo=lo, hi=hi: src.read_events(users, lo, hi))
        assert outcome(acc, users) == cold(client, users, lo, hi)
        assert 0 < n < n_cold and aggs == 2 and acc.from_source == n
    # everything is stored now: any range inside costs nothing
    acc, n, _ = sent(es, lambda: src.read_events(users, LO - DAY_MS, HI + 2 * DAY_MS))
    assert n == 0 and outcome(acc, users) == cold(client, users, LO - DAY_MS, HI + 2 * DAY_MS)


def test_late_and_deleted_documents_are_read_again(es: EsProtocolServer, client: Elasticsearch, tmp_path: Path) -> None:
    users = USERS[:3]
    src = stored(client, tmp_path)
    src.read_events(users, LO, HI)
    day = D0 + 5 * DAY_MS
    late = [{"@timestamp": day + 1000 * i, "util": "user1", "ecran": "late", "instance": "i0"} for i in range(4)]
    helpers.bulk(client, [{"_index": INDEX, "_id": f"late{i}", "_source": d} for i, d in enumerate(late)], refresh=True)
    acc, n, _ = sent(es, lambda: src.read_events(users, LO, HI))
    got = outcome(acc, users)
    assert got == cold(client, users, LO, HI)
    assert sum(1 for e in got[0]["user1"] if e[1] == "late") == 4
    assert 0 < n < 1000  # that one user's one day, read again
    # deleted documents: another day of another user
    client.delete_by_query(
        index=INDEX,
        query={
            "bool": {
                "filter": [
                    {"term": {"util": "user2"}},
                    {"range": {"@timestamp": {"gte": D0 + 6 * DAY_MS, "lt": D0 + 7 * DAY_MS}}},
                ]
            }
        },
        refresh=True,
    )
    acc, n, _ = sent(es, lambda: src.read_events(users, LO, HI))
    got = outcome(acc, users)
    assert got == cold(client, users, LO, HI)
    assert not [e for e in got[0]["user2"] if D0 + 6 * DAY_MS <= e[0] < D0 + 7 * DAY_MS]
    assert n == 0  # the day is now empty: read again, and there was nothing to send


def test_another_identity_shares_nothing(es: EsProtocolServer, client: Elasticsearch, tmp_path: Path) -> None:
    users = USERS[:2]
    stored(client, tmp_path).read_events(users, LO, HI)
    acc, n, aggs = sent(es, lambda: stored(client, tmp_path, identity="b" * 64).read_events(users, LO, HI))
    assert n > 0 and aggs == 0 and outcome(acc, users) == cold(client, users, LO, HI)


def test_days_not_yet_settled_are_never_kept(es: EsProtocolServer, client: Elasticsearch, tmp_path: Path) -> None:
    users = USERS[:3]
    # the clock says the data is recent: the last days of the range are within SHARE_SETTLE_S
    src = stored(client, tmp_path, settle_s=3 * 86_400, now_ms=HI + 2 * DAY_MS)
    src.read_events(users, LO, HI)
    acc, n, _ = sent(es, lambda: src.read_events(users, LO, HI))
    assert outcome(acc, users) == cold(client, users, LO, HI)
    # only the unsettled tail was read again, from the first unsettled day to the range's end
    first_unsettled = D0 + 9 * DAY_MS - 3 * DAY_MS  # HI's day + 2 days - (3 days + 1 day) = day 7..9
    tail = cold(client, users, first_unsettled - DAY_MS, HI)
    assert 0 < n <= sum(len(v) for v in tail[0].values()) + tail[1]


def test_a_corrupt_day_is_read_again(es: EsProtocolServer, client: Elasticsearch, tmp_path: Path) -> None:
    users = USERS[:2]
    src = stored(client, tmp_path)
    src.read_events(users, LO, HI)
    days = sorted((tmp_path / "es").rglob("*.seg"))
    assert len(days) == 2 * 8
    days[3].write_bytes(days[3].read_bytes()[:-7])  # truncated
    raw = bytearray(days[9].read_bytes())
    raw[-1] ^= 0x10  # a bit flip in the events
    days[9].write_bytes(bytes(raw))
    acc, n, _ = sent(es, lambda: src.read_events(users, LO, HI))
    assert outcome(acc, users) == cold(client, users, LO, HI) and n > 0
    assert sent(es, lambda: src.read_events(users, LO, HI))[1] == 0  # mended


def test_two_jobs_needing_the_same_days_read_them_once(
    es: EsProtocolServer, client: Elasticsearch, tmp_path: Path
) -> None:
    users = USERS[:4]
    want = cold(client, users, LO, HI)
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def job() -> None:
        barrier.wait()
        acc = stored(client, tmp_path).read_events(users, LO, HI)
        results.append((outcome(acc, users), acc.from_source))

    es.reset_counters()
    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [want, want]
    assert sorted(r[1] for r in results)[0] == 0  # the second found every day kept
    assert es.hits_sent == max(r[1] for r in results)


def test_eviction_under_a_tiny_bound_never_pulls_a_day_from_its_reader(
    es: EsProtocolServer, client: Elasticsearch, tmp_path: Path
) -> None:
    users = USERS[:3]
    stored(client, tmp_path).read_events(users, LO, HI)
    before = sorted((tmp_path / "es").rglob("*.seg"))
    src = stored(client, tmp_path, max_bytes=1)
    removed: list[Path] = []
    real = src.days.load

    def load(user: str, day: int):  # type: ignore[no-untyped-def]
        # while this reader holds its users' locks, another worker's eviction runs
        if not removed:
            removed.extend(budget.enforce(tmp_path, 1) or [Path("none")])
        return real(user, day)

    src.days.load = load  # type: ignore[method-assign]
    acc = src.read_events(users[:1], LO, HI)
    assert outcome(acc, users[:1]) == cold(client, users[:1], LO, HI)
    # user0's lock stripe is held (and so are the users who share it): their days stayed
    stripe = stripe_lock(src.days.root, src.days._user_dir("user0").name)
    held = [src.days._user_dir(u) for u in users if stripe_lock(src.days.root, src.days._user_dir(u).name) == stripe]
    assert removed and not [p for p in removed if p.parent in held]
    assert {p for p in before if p.parent not in held} <= set(removed)
    kept = sum(p.stat().st_size for folder in held for p in folder.iterdir())
    assert budget.store_bytes(tmp_path) <= 1 + kept + sum(p.stat().st_size for p in (src.days.root / "locks").iterdir())


def test_counts_come_from_the_stored_manifests(client: Elasticsearch, tmp_path: Path) -> None:
    users = USERS[:3]
    src = stored(client, tmp_path)
    assert src.counts(users, LO, HI) is None  # nothing stored: the plan sizes units by count
    src.read_events(users, LO, HI)
    want = {}
    for u in users:  # the whole days of the range, as kept
        acc = ElasticsearchSource(client, INDEX).read_events([u], LO - LO % DAY_MS, HI - HI % DAY_MS + DAY_MS - 1)
        want[u] = len(acc.pop_user(u))
    assert src.counts(users, LO, HI) == want
