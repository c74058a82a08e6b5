"""The sync and async clients are twins over one core (``_core.py``): the same methods, signatures
and docstrings; the core's steps run alike under both; the records match the API's schemas."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
from collections.abc import Callable

import httpx
import pytest

from sessionizer_client import (
    AsyncClient,
    AsyncJob,
    Client,
    ConnectionFailed,
    Job,
    JobFailed,
    JobFailure,
    JobRecord,
    RetryPolicy,
)
from sessionizer_client._core import Lines, Skip
from sessionizer_client._steps import Out, Sleep, Stream
from sessionizer_client.models import JOB_FIELDS, SESSION_FIELDS, JobLinks, JobRequest, Progress, format_time
from webapp.jobs import schemas

from .conftest import END, KEYS, START, USERS

#: the async twin's name of a sync method, where they differ
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
#: the words of a sync annotation that the async twin spells otherwise
ASYNC_WORDS = {
    "Client": "AsyncClient",
    "Job": "AsyncJob",
    "Iterator": "AsyncIterator",
    "BaseTransport": "AsyncBaseTransport",
}
#: private methods the command line and the tests use, which the twins keep alike too
SHARED_PRIVATE = {"__init__", "_iter_bytes", "_rows"}


def methods(cls: type) -> dict[str, Callable]:
    """The methods a class defines itself: public ones, and the shared private ones."""
    return {
        n: v
        for n, v in vars(cls).items()
        if callable(v) and (not n.startswith("_") or n in SHARED_PRIVATE | set(RENAMED) | set(RENAMED.values()))
    }


def as_async(annotation: object) -> str:
    return re.sub(r"\b(\w+)\b", lambda m: ASYNC_WORDS.get(m[1], m[1]), str(annotation))


def differences(sync: type, twin: type) -> list[str]:
    """Where ``twin`` is not the async image of ``sync``: names, parameters (name, kind, default,
    annotation), return annotation, docstring, coroutine or not."""
    ours, theirs = methods(sync), methods(twin)
    found = sorted({RENAMED.get(n, n) for n in ours} ^ set(theirs))
    found = [f"{name}: defined on one twin only" for name in found]
    for name, method in ours.items():
        other = theirs.get(RENAMED.get(name, name))
        if other is None:
            continue
        a, b = inspect.signature(method), inspect.signature(other)
        params = [(p.name, p.kind, p.default, as_async(p.annotation)) for p in a.parameters.values()]
        if params != [(p.name, p.kind, p.default, str(p.annotation)) for p in b.parameters.values()]:
            found.append(f"{name}: parameters {a} != {b}")
        if as_async(a.return_annotation) != str(b.return_annotation):
            found.append(f"{name}: returns {a.return_annotation} != {b.return_annotation}")
        if method.__doc__ != other.__doc__:
            found.append(f"{name}: docstrings differ")
        if not name.startswith("_") and not method.__doc__:
            found.append(f"{name}: no docstring")
        if inspect.iscoroutinefunction(method):
            found.append(f"{name}: the sync twin is a coroutine")
        returns_iterator = str(b.return_annotation).startswith("AsyncIterator")
        if not (returns_iterator or inspect.iscoroutinefunction(other)) and name not in SHARED_PRIVATE:
            found.append(f"{name}: the async twin neither awaits nor iterates asynchronously")
    return found


@pytest.mark.parametrize(("sync", "twin"), [(Client, AsyncClient), (Job, AsyncJob)])
def test_the_twins_have_the_same_methods_signatures_and_docstrings(sync: type, twin: type) -> None:
    assert differences(sync, twin) == []


def test_a_drifted_twin_is_caught() -> None:
    class Drifted(AsyncClient):
        async def submit(self, users, start, end, method=None):
            """Another text."""

        async def extra(self) -> None:
            """Only here."""

    found = differences(Client, Drifted)
    assert "extra: defined on one twin only" in found and "aclose: defined on one twin only" in found
    assert any(f.startswith("submit: parameters") for f in found) and "submit: docstrings differ" in found


def test_the_records_match_the_api_schemas() -> None:
    """Every field the API documents has its typed attribute, and no attribute is made up."""
    assert set(JOB_FIELDS) == set(schemas.JobSchema().fields)
    assert set(SESSION_FIELDS) == set(schemas.SessionSchema().fields)
    for record, schema in (
        (Progress, schemas.ProgressSchema),
        (JobRequest, schemas.JobRequestSchema),
        (JobFailure, schemas.JobErrorSchema),
        (JobLinks, schemas.LinksSchema),
    ):
        assert set(record.__dataclass_fields__) == set(schema().fields), record


def test_ndjson_lines_and_skips_are_cut_anywhere() -> None:
    rows = [{"user": f"u{i}", "n": i, "text": "é" * (i % 4)} for i in range(40)]
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    rng = random.Random(5)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randint(0, 12)))
        chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
        lines = Lines(json.loads)
        assert [r for c in chunks for r in lines.feed(c)] + lines.end() == rows
        given = rng.randint(0, len(body))
        skip = Skip(given)
        assert b"".join(b for c in chunks for b in skip(c)) == body[given:]
    unterminated = Lines(json.loads)
    assert unterminated.feed(b'{"a": 1}\n{"b"') == [{"a": 1}] and unterminated.feed(b": 2}") == []
    assert unterminated.end() == [{"b": 2}]


def stoppable(log: list[str]) -> Stream[int]:
    """Gives 0, 1, 2 with a step before each; its ``finally`` yields a step too."""
    try:
        for i in range(3):
            yield Sleep(0)
            yield Out([i])
    finally:
        yield Sleep(0)
        log.append("cleaned up")


def test_a_stream_stopped_early_runs_its_cleanup_steps_in_both_twins() -> None:
    log: list[str] = []
    with Client("http://127.0.0.1:9") as client:  # nothing is sent: the steps only sleep
        assert list(client._iterate(stoppable(log))) == [0, 1, 2] and log == ["cleaned up"]
        stream = client._iterate(stoppable(log))
        assert next(stream) == 0
        stream.close()
        assert log == ["cleaned up"] * 2

    async def scenario() -> None:
        async with AsyncClient("http://127.0.0.1:9") as client:
            stream = client._iterate(stoppable(log))
            assert await anext(stream) == 0
            await stream.aclose()
            assert log == ["cleaned up"] * 3
            assert [i async for i in client._iterate(stoppable(log))] == [0, 1, 2]
            assert log == ["cleaned up"] * 4

    asyncio.run(scenario())


@pytest.mark.slow
def test_records_are_the_api_json_typed(client_stack) -> None:
    with Client(client_stack.api, KEYS["alice"]) as client:
        job = client.submit(USERS, START, END, method="gap", params={"max_gap_s": 900}).wait(timeout=60)
        raw = httpx.get(f"{client_stack.api}/jobs/{job.id}", headers={"Authorization": f"Bearer {KEYS['alice']}"})
        record = job.record
        assert record == JobRecord.from_json(raw.json()) and record.extra == {}
        assert record.status == "succeeded" and record.done and record.error is None
        assert record.request is not None and record.request.users == tuple(USERS)
        assert format_time(record.request.start) == START and format_time(record.request.end) == END
        assert record.request.method == "gap" and record.request.params["max_gap_s"] == 900
        assert record.submitted_at is not None and format_time(record.submitted_at) == raw.json()["submitted_at"]
        assert record.finished_at is not None and record.submitted_at <= record.finished_at
        assert record.links == JobLinks(f"/jobs/{job.id}", f"/jobs/{job.id}/sessions", f"/jobs/{job.id}/cancel")
        assert record.progress == Progress(
            len(USERS), len(USERS), record.progress.events_scanned, record.progress.events_from_source
        )
    with Client(client_stack.doomed) as client:
        doomed = client.submit(["ana"], START, END)
        with pytest.raises(JobFailed) as failed:
            doomed.wait(timeout=30)
        assert doomed.record.error is not None and doomed.record.error.type == "deadline_exceeded"
        assert (failed.value.type, failed.value.reason) == (doomed.record.error.type, doomed.record.error.message)


@pytest.mark.slow
def test_a_stream_stopped_early_gives_its_connection_back(client_stack) -> None:
    """With one connection in the pool, a sessions stream left open blocks the next call (the
    pool times out), and one stopped early does not: the twins close what they stop."""
    one = httpx.Limits(max_connections=1)
    quick = RetryPolicy(attempts=1)
    with Client(client_stack.api, KEYS["bob"], limits=one, timeout=2, retry=quick) as client:
        job = client.submit(USERS, START, END).wait(timeout=60)
        held = job.sessions()
        assert next(held).user in USERS
        with pytest.raises(ConnectionFailed, match="PoolTimeout"):
            client.job(job.id)  # the only connection is the open stream's
        held.close()
        assert client.job(job.id).status == "succeeded"
        rows = job._rows()
        next(rows)
        rows.close()
        assert client.job(job.id).status == "succeeded"

    async def scenario() -> None:
        async with AsyncClient(client_stack.api, KEYS["bob"], limits=one, timeout=2, retry=quick) as client:
            job = await client.job((await client.submit(USERS, START, END)).id)
            await job.wait(timeout=60)
            held = job.sessions()
            assert (await anext(held)).user in USERS
            with pytest.raises(ConnectionFailed, match="PoolTimeout"):
                await client.job(job.id)
            await held.aclose()
            assert (await client.job(job.id)).status == "succeeded"

    asyncio.run(scenario())
