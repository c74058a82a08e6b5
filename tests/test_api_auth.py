"""API keys: Bearer keys configured by name and digest, jobs isolated per key, no secret echoed."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from tests.helpers import FUTURE, PAST, assert_problem, play_worker, session, unique
from webapp.auth import digest, parse_keys
from webapp.errors import NO_JOB

ALICE, BOB = "alice-key-Zq3v9R1xUuYh0kT8w", "bob-key-Pp4e7L2mNcDa6sQ1j"
ES_PASSWORD = "es-secret-Hk29dj3"


@pytest.fixture
def app(redis_url):
    from webapp import create_app

    return create_app(
        {
            "TESTING": True,
            "REDIS_URL": redis_url,
            "AUTH_REQUIRED": True,
            "API_KEYS": f"alice:{digest(ALICE)}, bob:{digest(BOB).upper()}",
        }
    )


@pytest.fixture
def store(app):
    return app.extensions["sessionizer"].store


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong"), {"Authorization": ALICE}, {"Authorization": f"Basic {ALICE}"}, {"Authorization": "Bearer "}],
)
def test_without_a_valid_key_every_jobs_route_is_401(client, headers) -> None:
    x = "x"  # even a malformed id: the key is checked first
    for resp in (
        client.get("/jobs", headers=headers),
        client.post("/jobs", json=FUTURE, headers=headers),
        client.get(f"/jobs/{x}", headers=headers),
        client.delete(f"/jobs/{x}", headers=headers),
        client.post(f"/jobs/{x}/cancel", headers=headers),
        client.get(f"/jobs/{x}/sessions", headers=headers),
    ):
        body = assert_problem(resp, 401)
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="sessionizer"'
        assert ALICE not in resp.get_data(as_text=True) and "wrong" not in body["detail"]


def test_health_and_docs_need_no_key(client) -> None:
    assert client.get("/healthz").status_code == 200 and client.get("/openapi.json").status_code == 200


def test_a_job_is_visible_only_to_the_key_that_made_it(client, store) -> None:
    job = client.post("/jobs", json=unique(PAST, "iso"), headers=bearer(ALICE)).get_json()
    play_worker(store, job["id"], [[session("anes", 1)]])
    jid = job["id"]
    assert client.get(f"/jobs/{jid}", headers=bearer(ALICE)).status_code == 200
    for resp in (
        client.get(f"/jobs/{jid}", headers=bearer(BOB)),
        client.get(f"/jobs/{jid}/sessions", headers=bearer(BOB)),
        client.post(f"/jobs/{jid}/cancel", headers=bearer(BOB)),
        client.delete(f"/jobs/{jid}", headers=bearer(BOB)),
        client.get(f"/jobs/{jid}", headers={**bearer(BOB), "Prefer": "wait=1"}),
    ):
        body = assert_problem(resp, 404)
        assert body["detail"] == NO_JOB  # as if it never existed
    assert jid not in [j["id"] for j in client.get("/jobs?limit=100", headers=bearer(BOB)).get_json()["jobs"]]
    assert jid in [j["id"] for j in client.get("/jobs?limit=100", headers=bearer(ALICE)).get_json()["jobs"]]
    assert client.get(f"/jobs/{jid}/sessions", headers=bearer(ALICE)).get_json()["sessions"] == [session("anes", 1)]


def test_idempotency_keys_are_per_api_key(client) -> None:
    body = unique(FUTURE, "idem-iso")
    a = client.post("/jobs", json=body, headers={**bearer(ALICE), "Idempotency-Key": "same"}).get_json()
    b = client.post("/jobs", json={**body, "method": "hdbscan"}, headers={**bearer(BOB), "Idempotency-Key": "same"})
    assert b.status_code == 202 and b.get_json()["id"] != a["id"]


def test_no_secret_in_responses_bodies_or_logs(client, caplog, monkeypatch) -> None:
    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", ES_PASSWORD)
    caplog.set_level(logging.DEBUG)
    texts = []
    job = client.post("/jobs", json=unique(FUTURE, "secret"), headers={**bearer(ALICE), "Idempotency-Key": "retry-1"})
    texts.append(job.get_data(as_text=True))
    for resp in (
        client.get(f"/jobs/{job.get_json()['id']}", headers=bearer(ALICE)),
        client.get("/jobs", headers=bearer(ALICE)),
        client.get("/jobs", headers=bearer(ALICE + "x")),
        client.post("/jobs", json={"users": 1}, headers=bearer(ALICE)),
    ):
        texts.append(resp.get_data(as_text=True))
        texts.extend(f"{k}: {v}" for k, v in resp.headers.items())
    texts.append(caplog.text)
    from sessionizer.settings import load_settings

    texts.append(repr(load_settings()))
    store = client.application.extensions["sessionizer"].store
    texts.extend(
        v.decode(errors="replace")
        for k in store.client.keys("*")
        if store.client.type(k) == b"hash"
        for v in store.client.hvals(k)
    )
    texts.extend(store.client.get(k).decode() for k in store.client.keys("sz:idem:*"))
    joined = "\n".join(texts)
    assert ALICE not in joined and BOB not in joined and ES_PASSWORD not in joined
    assert digest(ALICE) not in joined  # not even the digest is shown


def test_keys_config_is_checked_without_echoing_it() -> None:
    assert parse_keys(f"a:{'0' * 64}, b.c-d_e:{'F' * 64}\n") == {"0" * 64: "a", "f" * 64: "b.c-d_e"}
    assert parse_keys("") == {}
    for bad in (f"a:{ALICE}", ALICE, f"bad name:{'0' * 64}"):
        with pytest.raises(ValueError) as err:
            parse_keys(bad)
        assert ALICE not in str(err.value) and "entry 1" in str(err.value)


def test_auth_required_without_keys_refuses_to_start(redis_url) -> None:
    from webapp import create_app

    with pytest.raises(RuntimeError, match="API_KEYS"):
        create_app({"TESTING": True, "REDIS_URL": redis_url, "AUTH_REQUIRED": True, "API_KEYS": ""})


def test_without_required_auth_a_key_still_names_the_owner(redis_url) -> None:
    from webapp import create_app

    app = create_app({"TESTING": True, "REDIS_URL": redis_url, "API_KEYS": f"alice:{digest(ALICE)}"})
    client = app.test_client()
    anon = client.post("/jobs", json=unique(FUTURE, "anon")).get_json()
    mine = client.post("/jobs", json=unique(FUTURE, "mine"), headers=bearer(ALICE)).get_json()
    assert client.get(f"/jobs/{anon['id']}").status_code == 200
    assert client.get(f"/jobs/{mine['id']}").status_code == 404
    assert client.get(f"/jobs/{anon['id']}", headers=bearer(ALICE)).status_code == 404
    assert_problem(client.get("/jobs", headers=bearer(BOB)), 401)  # a key given must be a known key


def test_cli_makes_a_key_and_its_entry() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "webapp.auth", "new", "ci"], capture_output=True, text=True, check=True
    ).stdout
    key = out.splitlines()[0].rsplit(" ", 1)[1]
    entry = out.splitlines()[1].rsplit(" ", 1)[1]
    assert parse_keys(entry) == {digest(key): "ci"}
    hashed = subprocess.run(
        [sys.executable, "-m", "webapp.auth", "hash"], input=key + "\n", capture_output=True, text=True, check=True
    )
    assert hashed.stdout.strip() == digest(key)
