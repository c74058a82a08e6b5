"""The Python client against the real stack (see conftest.py): every method, sync and async."""

from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pandas as pd
import pytest

from devstack import free_port
from sessionizer_client import (
    AsyncClient,
    AsyncJob,
    Client,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    Job,
    JobCancelled,
    JobFailed,
    NotFound,
    RateLimited,
    RetryPolicy,
    Session,
    Unauthorized,
    WaitTimeout,
)
from sessionizer_client._retry import parse_retry_after

from .conftest import END, KEYS, START, USERS

pytestmark = pytest.mark.slow  # a real Redis, Celery worker and gunicorn servers (conftest.py)


def raw_sessions(url: str, key: str, job_id: str) -> list[dict]:
    """The sessions as the API's plain JSON answer gives them (not through the client)."""
    resp = httpx.get(f"{url}/jobs/{job_id}/sessions", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    return resp.json()["sessions"]


def test_submit_wait_and_stream_sessions(client_stack) -> None:
    with Client(client_stack.api, KEYS["alice"]) as client:
        job = client.submit(USERS, START, END, method="gap", params={"max_gap_s": 900}, fresh=True)
        assert job.status in ("queued", "running", "succeeded") and job.continuation_token() == job.id
        assert job.wait(timeout=60) is job
        assert job.status == "succeeded" and job.done and job.error is None
        assert job.progress.users_done == job.progress.users_total == len(USERS)
        assert job.request["method"] == "gap" and job.request["params"]["max_gap_s"] == 900
        sessions = list(job.sessions())
        raw = raw_sessions(client_stack.api, KEYS["alice"], job.id)
        assert all(isinstance(s, Session) for s in sessions)
        assert [(s.user, s.start.isoformat().replace("+00:00", "Z")) for s in sessions] == [
            (r["user"], r["start"]) for r in raw
        ]
        assert len(sessions) == job.stats()["sessions"] == 4 * 3 * 2  # two a day, four users, three days
        assert all(s.start.tzinfo is not None and s.events == 12 for s in sessions)
        assert {s.user for s in job.sessions(user="01")} == {"01"}  # "01" stays a string
        assert job.refresh().status == "succeeded"


def test_sessions_are_streamed_lazily(client_stack) -> None:
    with Client(client_stack.api, KEYS["alice"]) as client:
        job = client.submit(USERS, START, END).wait(timeout=60)
        stream = job.sessions()
        assert inspect.isgenerator(stream)
        first = next(stream)  # one session decoded; the rest is still on the wire
        stream.close()  # the response is closed, and the connection can serve the next call
        assert first.user == "01" and client.job(job.id).status == "succeeded"


def test_session_tolerates_fields_it_does_not_know() -> None:
    row = {
        "user": "a",
        "instance": "i",
        "start": "2022-09-05T08:00:00Z",
        "end": "2022-09-05T09:00:00.5Z",
        "duration_s": 3600.5,
        "events": 3,
        "entry_screen": "x",
        "exit_screen": "y",
        "truncated_start": False,
        "truncated_end": True,
        "split_reason": "idle",
        "a_later_field": [1],
    }
    s = Session.from_json(row)
    assert s.split_reason == "idle" and s.extra == {"a_later_field": [1]} and s.end.microsecond == 500000
    del row["split_reason"], row["a_later_field"]
    assert Session.from_json(row).split_reason is None


def test_resume_by_id_in_a_new_process(client_stack) -> None:
    with Client(client_stack.api, KEYS["alice"]) as client:
        job = client.submit(USERS[:2], START, END, fresh=True)
        token = job.continuation_token()
    code = (
        "import sys; from sessionizer_client import Client\n"
        "job = Client().job(sys.argv[1]).wait(timeout=60)\n"
        "print(job.status, sum(1 for _ in job.sessions()))"
    )
    env = {"SESSIONIZER_URL": client_stack.api, "SESSIONIZER_API_KEY": KEYS["alice"], "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code, token], env=env, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["succeeded", str(len(raw_sessions(client_stack.api, KEYS["alice"], token)))]


def test_a_failed_job_raises_with_its_reason(client_stack) -> None:
    with Client(client_stack.doomed) as client:
        job = client.submit(["ana"], START, END)
        with pytest.raises(JobFailed) as info:
            job.wait(timeout=30)
        assert info.value.type == "deadline_exceeded" and "deadline" in info.value.reason
        assert info.value.job.status == "failed" and job.error["type"] == "deadline_exceeded"
        with pytest.raises(Conflict) as conflict:
            list(job.sessions())
        assert conflict.value.job_status == "failed" and "deadline" in conflict.value.detail


def test_a_timeout_leaves_the_job_then_cancel_and_delete(client_stack) -> None:
    with Client(client_stack.idle) as client:  # no worker: the job stays queued
        job = client.submit(["ana"], START, END)
        with pytest.raises(WaitTimeout) as info:
            job.wait(timeout=1)
        assert isinstance(info.value, TimeoutError) and info.value.job is job
        assert client.job(job.id).status == "queued"  # not cancelled by the timeout
        with pytest.raises(Conflict) as conflict:
            job.to_pandas()
        assert conflict.value.job_status == "queued"
        assert job.cancel().status == "cancelled"
        with pytest.raises(JobCancelled) as cancelled:
            job.wait()
        assert cancelled.value.reason
        job.delete()
        with pytest.raises(NotFound):
            client.job(job.id)


def test_errors_are_typed_from_problem_json(client_stack) -> None:
    with Client(client_stack.api, KEYS["alice"]) as alice, Client(client_stack.api, KEYS["bob"]) as bob:
        with pytest.raises(InvalidRequest) as invalid:
            alice.submit(["ana", "ana"], END, START, params={"nope": 1})
        assert invalid.value.status == 422 and {"users", "end"} <= set(invalid.value.errors)
        with pytest.raises(NotFound):
            alice.job("no-such-job")
        job = alice.submit(["ana"], START, END)
        with pytest.raises(NotFound):  # another key's job is as unknown as one never issued
            bob.job(job.id)
        assert job.id not in {j.id for j in bob.jobs()}
    with Client(client_stack.api, "wrong-key") as wrong, pytest.raises(Unauthorized) as unauthorized:
        wrong.job(job.id)
    assert unauthorized.value.status == 401 and "wrong-key" not in str(unauthorized.value)
    with Client(client_stack.api) as keyless, pytest.raises(Unauthorized):
        keyless.job(job.id)  # the API requires a key


def test_jobs_follows_every_page_and_filters(client_stack) -> None:
    with Client(client_stack.api, KEYS["pages"]) as client:
        made = [client.submit([u], START, END) for u in USERS] + [client.submit(["ana", "ben"], START, END)]
        listed = [j.id for j in client.jobs(page_size=2)]
        assert listed == [j.id for j in reversed(made)]  # newest first, across three pages
    with Client(client_stack.doomed) as client:  # jobs there fail after 1 s, unless cancelled first
        ours = [client.submit([u], START, END) for u in USERS[:3]]
        ours[1].cancel()
        for job in ours[::2]:
            with pytest.raises(JobFailed):
                job.wait(timeout=30)
        ids = {j.id for j in ours}
        assert [j.id for j in client.jobs(status="cancelled", page_size=1) if j.id in ids] == [ours[1].id]
        assert [j.id for j in client.jobs(status="failed") if j.id in ids] == [ours[2].id, ours[0].id]


def test_rate_limited_requests_are_retried_after_retry_after(client_stack, caplog) -> None:
    caplog.set_level(logging.INFO, "sessionizer_client")
    with Client(client_stack.doomed) as client:  # 2 requests/s, bursts of 5
        job = client.submit(["ben"], START, END)
        for _ in range(7):
            assert client.job(job.id).id == job.id
        retries = [r.getMessage() for r in caplog.records if "answered 429" in r.getMessage()]
        assert retries and client.requests_sent == 8 + len(retries)
        assert all(m.endswith(" in 1.00 s") for m in retries), retries  # the service's Retry-After: 1
    with Client(client_stack.doomed, retry=RetryPolicy(attempts=1)) as impatient:
        with pytest.raises(RateLimited) as info:
            for _ in range(8):
                impatient.job(job.id)
        assert info.value.retry_after is not None and info.value.retry_after >= 1


def test_a_wait_the_service_declines_is_not_a_busy_loop(client_stack, caplog) -> None:
    caplog.set_level(logging.INFO, "sessionizer_client")
    with Client(client_stack.idle) as holder, Client(client_stack.idle) as other:  # one held wait per key there
        job = holder.submit(["ana"], START, END)
        held = threading.Thread(target=lambda: pytest.raises(WaitTimeout, holder.job(job.id).wait, timeout=5))
        held.start()
        time.sleep(0.5)  # (ordering only) the holder's long poll is in flight and holds the key's one wait
        with pytest.raises(WaitTimeout):
            other.job(job.id).wait(timeout=3)
        held.join()
        assert any("wait not held" in r.getMessage() for r in caplog.records)
        # whichever was declined polled at the service's Retry-After (2 s), never in a tight loop
        assert holder.requests_sent + other.requests_sent <= 10


def test_503_is_retried_and_creates_one_job(client_stack, proxy_factory) -> None:
    proxy = proxy_factory(fail_first=2, retry_after="0")
    with Client(proxy.url, KEYS["proxy503"]) as client:
        job = client.submit(["chloe"], START, END)
        assert proxy.refused == 2 and client.requests_sent == 3
        assert [j.id for j in client.jobs()] == [job.id]
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(closed, retry=RetryPolicy(attempts=2, backoff_s=0.01)) as client, pytest.raises(ConnectionFailed):
        client.job("x")


def test_a_dropped_answer_to_a_submit_does_not_create_two_jobs(client_stack, proxy_factory) -> None:
    proxy = proxy_factory(drop_first_post=True)
    with Client(proxy.url, KEYS["proxy"], retry=RetryPolicy(backoff_s=0.05)) as client:
        job = client.submit(["ana", "ben"], START, END)
        assert proxy.dropped == 1
        assert sum(line.startswith(b"POST /jobs ") for line in proxy.requests) == 2  # sent twice, created once
        assert [j.id for j in client.jobs()] == [job.id]
        assert job.wait(timeout=60).status == "succeeded"


def test_to_pandas_parquet_and_csv_round_trip(client_stack, tmp_path) -> None:
    with Client(client_stack.api, KEYS["alice"]) as client:
        job = client.submit(USERS, START, END, group_by=["user", "instance"]).wait(timeout=60)
        df = job.to_pandas()
        sessions = list(job.sessions())
        assert len(df) == len(sessions) > 0
        assert isinstance(df["start"].dtype, pd.DatetimeTZDtype) and str(df["start"].dt.tz) == "UTC"
        assert isinstance(df["end"].dtype, pd.DatetimeTZDtype)
        assert isinstance(df["user"].dtype, pd.CategoricalDtype) and isinstance(
            df["instance"].dtype, pd.CategoricalDtype
        )
        assert df["events"].dtype == "int64" and df["duration_s"].dtype == "float64"
        assert df["truncated_start"].dtype == bool and df["truncated_end"].dtype == bool
        assert list(df["user"].astype(str)) == [s.user for s in sessions]
        assert list(df["start"]) == [pd.Timestamp(s.start) for s in sessions]
        # the analytics fields, typed, and the same as the sessions' own
        assert df["engaged"].dtype == bool and df["screens"].dtype == "int64" and df["active_s"].dtype == "float64"
        assert list(df["session_id"]) == [s.session_id for s in sessions] and all(
            len(s.session_id) == 16 for s in sessions
        )
        assert list(df["engaged"]) == [s.engaged for s in sessions] and (df["active_s"] <= df["duration_s"]).all()
        assert set(df["instance"].cat.categories) == {"i1", "i2"}

        back = pd.read_parquet(job.to_parquet(tmp_path / "s.parquet"))
        pd.testing.assert_frame_equal(back, df)
        csv = pd.read_csv(job.to_csv(tmp_path / "s.csv"), dtype={"user": str})
        assert list(csv["user"]) == [s.user for s in sessions] and list(csv["events"]) == list(df["events"])
        assert not list(tmp_path.glob("*.part"))

        empty = client.submit(["nobody"], START, END).wait(timeout=60)
        assert len(empty.to_pandas()) == 0 and empty.to_pandas()["events"].dtype == "int64"


def test_async_client_has_the_same_methods_and_they_work(client_stack, tmp_path) -> None:
    def public(cls: type) -> set[str]:
        return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}

    assert public(AsyncClient) - {"aclose"} == public(Client) - {"close"}
    assert public(AsyncJob) == public(Job)

    async def scenario() -> None:
        async with AsyncClient(client_stack.api, KEYS["bob"]) as client:
            job = await client.submit(USERS, START, END, idempotency_key=f"k-{uuid.uuid4()}")
            again = await client.job(job.id)
            assert (await again.wait(timeout=60)).status == "succeeded"
            assert (await job.refresh()).status == "succeeded"
            sessions = [s async for s in job.sessions()]
            assert len(sessions) == (await job.stats())["sessions"] == len(await job.to_pandas())
            assert [s.user async for s in job.sessions(user="ben")] == ["ben"] * 6
            back = pd.read_parquet(await job.to_parquet(tmp_path / "a.parquet"))
            assert len(back) == len(sessions)
            assert len(pd.read_csv(await job.to_csv(tmp_path / "a.csv"))) == len(sessions)
            assert job.id in [j.id async for j in client.jobs(status="succeeded")]
            with pytest.raises(Conflict) as finished:  # a finished job stays as it is: 409, naming its status
                await job.cancel()
            assert finished.value.job_status == "succeeded"
            await job.delete()
            with pytest.raises(NotFound):
                await client.job(job.id)
        async with AsyncClient(client_stack.doomed) as client:
            doomed = await client.submit(["ana"], START, END)
            with pytest.raises(JobFailed):
                await doomed.wait(timeout=30)
        async with AsyncClient(client_stack.idle) as client:
            queued = await client.submit(["ana"], START, END)
            with pytest.raises(WaitTimeout):
                await queued.wait(timeout=1, long_poll=False, poll_interval=0.2)

    asyncio.run(scenario())


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT")
    assert later is not None and later > 86400
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert RetryPolicy(max_delay_s=5).delay(0, "3600") == 5  # a service's long Retry-After is capped
    assert 0 <= RetryPolicy(backoff_s=0.5).delay(3) <= 4.0


def test_the_client_stays_light() -> None:
    """Neither the package nor its command line loads the service's heavy dependencies."""
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).parents[2] / "client" / "pyproject.toml").read_text())["project"]
    assert sorted(d.split(">")[0] for d in meta["dependencies"]) == ["httpx", "rich"]
    assert meta["scripts"] == {"sessionizer": "sessionizer_client.cli:main"}
    code = (
        "import sys, sessionizer_client, sessionizer_client.cli\n"
        "print(sorted(m for m in ('celery', 'numpy', 'redis', 'elasticsearch', 'pandas', 'pyarrow', 'flask')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out


def test_the_async_client_retries_alike(client_stack, proxy_factory) -> None:
    refusing = proxy_factory(fail_first=2, retry_after="0")
    dropping = proxy_factory(drop_first_post=True)

    async def scenario() -> None:
        async with AsyncClient(refusing.url, KEYS["proxy503"]) as client:
            job = await client.submit(["ana"], START, END)
            assert refusing.refused == 2 and client.requests_sent == 3
            assert (await client.job(job.id)).id == job.id
        async with AsyncClient(client_stack.api, KEYS["proxy"]) as direct:
            before = [j.id async for j in direct.jobs()]
        async with AsyncClient(dropping.url, KEYS["proxy"], retry=RetryPolicy(backoff_s=0.05)) as client:
            job = await client.submit(["chloe"], START, END)  # the first request: the one the proxy drops
            assert dropping.dropped == 1
            assert [j.id async for j in client.jobs()] == [job.id, *before]  # one new job, not two
        async with AsyncClient(client_stack.doomed, retry=RetryPolicy(attempts=1)) as client:
            with pytest.raises(RateLimited) as info:
                for _ in range(8):
                    [j async for j in client.jobs()]
            assert info.value.retry_after is not None and info.value.retry_after >= 1

    asyncio.run(scenario())
