"""A bounded schemathesis run against the live ``/openapi.json``: no 5xx, and every answer (status,
content type, headers, body) conforms to what the document says.

The app requires API keys, as in docker-compose; the generated requests carry a valid key, and
path ids are sometimes swapped for real jobs (queued, succeeded) so more than 404s get checked.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, settings

with warnings.catch_warnings():
    # schemathesis 3.x subclasses a jsonschema class deprecated since jsonschema 4.18
    warnings.filterwarnings("ignore", message="jsonschema.RefResolver is deprecated", category=DeprecationWarning)
    import schemathesis
    import schemathesis.specs.openapi.references

from tests.helpers import FUTURE, PAST, play_worker, session, unique
from webapp.auth import digest

KEY = "fuzz-key-8Jd02nq0xP3s"


def make_app():
    from webapp import create_app

    # The session's Redis URL is not known at import time, where schemathesis needs the app:
    # the fixture below points this app at it before any request is made.
    return create_app(
        {
            "TESTING": True,
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "AUTH_REQUIRED": True,
            "API_KEYS": f"fuzz:{digest(KEY)}",
            "MAX_WAIT_S": 0.2,
            "RATE_LIMIT_PER_S": 0,
            "MAX_ACTIVE_JOBS": 0,
        }
    )


pytestmark = pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated:DeprecationWarning")
APP = make_app()
schema = schemathesis.from_wsgi("/openapi.json", APP)
KNOWN: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def live_store(redis_databases):
    """Point the app at a clean database of this module's own and plant a queued and a succeeded job."""
    import redis

    from sessionizer.jobstore import JobStore
    from sessionizer.jobstore.liveness import WorkerRegistry

    services = APP.extensions["sessionizer"]
    url = redis_databases.take()
    services.store = JobStore.from_url(url, services.settings.jobs.ttl_s)
    services.celery.conf.broker_url = url
    # a live worker heartbeat: /readyz answers 200 (its 503 is a documented outcome, but a 5xx
    # all the same for schemathesis' server-error check)
    services.workers = WorkerRegistry(redis.Redis.from_url(url), ttl_s=3600)
    services.workers.beat("fuzz@nowhere")
    client = APP.test_client()
    headers = {"Authorization": f"Bearer {KEY}"}
    queued = client.post("/jobs", json=unique(FUTURE, "fuzzq"), headers=headers).get_json()
    done = client.post("/jobs", json=unique(PAST, "fuzzd"), headers=headers).get_json()
    play_worker(services.store, done["id"], [[session("anes", k) for k in range(3)], [session("romain", 1)]])
    KNOWN[:] = [queued["id"], done["id"]]
    yield
    KNOWN.clear()
    redis_databases.give_back(url)


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_api_conforms_to_its_openapi_document(case) -> None:
    if case.path_parameters and "job_id" in case.path_parameters:
        pick = sum(map(ord, repr((case.query, case.headers)))) % 3
        if pick < 2 and case.method != "DELETE":
            case.path_parameters["job_id"] = KNOWN[pick]
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"})
