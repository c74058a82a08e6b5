"""The bounded schemathesis run over TCP, against the real server (gunicorn, gevent workers, keys
required): no 5xx and every answer as documented, with the server's own parsing, headers and
framing in the path. Path ids are real jobs (queued, succeeded) as well as generated ones."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import httpx
import pytest
import redis
from hypothesis import HealthCheck, settings

with warnings.catch_warnings():
    # schemathesis 3.x subclasses a jsonschema class deprecated since jsonschema 4.18
    warnings.filterwarnings("ignore", message="jsonschema.RefResolver is deprecated", category=DeprecationWarning)
    import schemathesis
    import schemathesis.specs.openapi.references

from sessionizer.jobstore import JobStore
from sessionizer.jobstore.liveness import WorkerRegistry
from tests.helpers import FUTURE, PAST, play_worker, session, unique
from tests.liveserver import LiveServer, bearer

pytestmark = [
    pytest.mark.slow,  # a gunicorn subprocess
    pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated:DeprecationWarning"),
]
KNOWN: list[str] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("fuzz"),
        MAX_WAIT_S="0.2",
        RATE_LIMIT_PER_S="0",
        MAX_ACTIVE_JOBS="0",
        AUTH_FAILURES_BURST="100000",
    ).start()
    with httpx.Client(base_url=live.base, timeout=30) as http:
        queued = http.post("/jobs", json=unique(FUTURE, "tcpq"), headers=bearer("alpha")).json()
        done = http.post("/jobs", json=unique(PAST, "tcpd"), headers=bearer("alpha")).json()
    play_worker(
        JobStore.from_url(live.redis.url), done["id"], [[session("anes", k) for k in range(3)], [session("romain", 1)]]
    )
    # a live worker heartbeat: /readyz answers 200 (its 503 is documented, but the fuzzer's
    # server-error check would take it for a failure)
    WorkerRegistry(redis.Redis.from_url(live.redis.url), ttl_s=3600).beat("fuzz@nowhere")
    KNOWN[:] = [queued["id"], done["id"]]
    yield live
    KNOWN.clear()
    live.stop()


@pytest.fixture(scope="module")
def tcp_schema(server: LiveServer):
    return schemathesis.from_uri(f"{server.base}/openapi.json", base_url=server.base)


with warnings.catch_warnings():
    # schemathesis 3.x warns about filter arguments it passes itself (their default None)
    warnings.filterwarnings("ignore", message="Argument `.*` is deprecated", category=DeprecationWarning)
    schema = schemathesis.from_pytest_fixture("tcp_schema")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_the_real_server_conforms_to_its_openapi_document(case) -> None:
    if case.path_parameters and "job_id" in case.path_parameters:
        pick = sum(map(ord, repr((case.query, case.headers)))) % 3
        if pick < 2 and case.method != "DELETE":
            case.path_parameters["job_id"] = KNOWN[pick]
    case.call_and_validate(headers=bearer("alpha"), timeout=30)
