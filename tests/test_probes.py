"""Probes through the real server (gunicorn, keys required), as a new user and as an attacker would
send them: every answer is the documented 4xx problem+json naming the field, never a 5xx; one key
learns nothing of another's jobs; the OpenAPI document is whole.

Each probe is one row of ``PROBES`` / ``RAW_PROBES``: what is sent, the status expected, and the
field the problem must name. ``{alpha}`` is a job of key alpha, ``{beta}`` one of key beta, ``{done}``
a succeeded job of alpha's, ``{random}`` a job id never issued.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from sessionizer.jobstore import JobStore
from tests.helpers import play_worker, session
from tests.liveserver import KEYS, LiveServer, bearer, parse_answer, read_answer

pytestmark = pytest.mark.slow  # gunicorn subprocesses

PAST = {"users": ["romain", "anes"], "start": "2022-09-22T11:00Z", "end": "2022-09-28T12:00Z", "method": "gap"}
FUTURE = {**PAST, "start": "2998-12-31T00:00Z", "end": "2999-01-01T00:00Z"}
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str
    status: int
    fieldname: str | None = None  # the field the problem's `errors` must name
    body: Any = None  # dict/list: JSON; bytes: sent as they are (Content-Type: application/json)
    key: str | None = "alpha"
    headers: dict[str, str] = field(default_factory=dict)


def deep(levels: int, opening: str, inner: str, closing: str) -> bytes:
    return (opening * levels + inner + closing * levels).encode()


def body_with(**fields_: Any) -> bytes:
    return json.dumps({**FUTURE, **fields_}).encode()


BAD_IDS = [":done", ":sessions", ":scanned", ":unitstats", ":sharers", "%00", "%0a", "x" * 300, "..%2f..%2fhealthz"]

PROBES: list[Probe] = [
    # --- job ids: only the documented form (a UUID) reaches the store; anything else is 404 -----
    *[Probe(f"GET own id{s[:12]}", "GET", f"/jobs/{{alpha}}{s}", 404) for s in BAD_IDS],
    *[Probe(f"GET other key's id{s[:12]}", "GET", f"/jobs/{{alpha}}{s}", 404, key="beta") for s in BAD_IDS[:5]],
    *[Probe(f"DELETE own id{s}", "DELETE", f"/jobs/{{alpha}}{s}", 404) for s in BAD_IDS[:5]],
    *[Probe(f"cancel own id{s}", "POST", f"/jobs/{{alpha}}{s}/cancel", 404) for s in BAD_IDS[:5]],
    *[Probe(f"sessions own id{s}", "GET", f"/jobs/{{done}}{s}/sessions", 404) for s in BAD_IDS[:5]],
    Probe("GET id not a uuid", "GET", "/jobs/not-a-uuid", 404),
    Probe("GET id uuid without dashes", "GET", "/jobs/{alpha_hex}", 404),
    Probe("GET another key's job", "GET", "/jobs/{beta}", 404),
    Probe("DELETE another key's job", "DELETE", "/jobs/{beta}", 404),
    Probe("cancel another key's job", "POST", "/jobs/{beta}/cancel", 404),
    Probe("sessions of another key's job", "GET", "/jobs/{beta}/sessions", 404),
    Probe("GET a never-issued id", "GET", "/jobs/{random}", 404),
    Probe("bad id without a key", "GET", "/jobs/{alpha}:done", 401, key=None),  # the key is checked first
    Probe(
        "bad id with a wrong key",
        "GET",
        "/jobs/{alpha}:done",
        401,
        key=None,
        headers={"Authorization": "Bearer not-a-key"},
    ),
    # --- bodies: every bad input is a 4xx naming the field -----------------------------------
    Probe(
        "lone surrogate in a user",
        "POST",
        "/jobs",
        422,
        "users",
        b'{"users": ["\\ud800"], "start": "2022-09-05", "end": "2022-09-12"}',
    ),
    Probe(
        "lone low surrogate in a user",
        "POST",
        "/jobs",
        422,
        "users",
        b'{"users": ["a\\udfff"], "start": "2022-09-05", "end": "2022-09-12"}',
    ),
    Probe("lone surrogate in a params key", "POST", "/jobs", 422, "params", body_with(params={"\ud800": 1})),
    Probe(
        "Idempotency-Key with percent escapes, taken as it is",
        "POST",
        "/jobs",
        202,
        None,
        FUTURE,
        headers={"Idempotency-Key": "%ED%A0%80"},
    ),
    Probe(
        "unknown field named by a lone surrogate",
        "POST",
        "/jobs",
        422,
        "\ud800",
        b'{"users": ["a"], "start": "2022-09-05", "end": "2022-09-12", "\\ud800": 1}',
    ),
    Probe(
        "start year 1 with +01:00 (before year 1 in UTC)",
        "POST",
        "/jobs",
        422,
        "start",
        body_with(start="0001-01-01T00:30+01:00", end="2022-01-01"),
    ),
    Probe(
        "end year 9999 with -05:00 (after 9999 in UTC)",
        "POST",
        "/jobs",
        422,
        "end",
        body_with(start="9999-12-31T00:00Z", end="9999-12-31T23:00-05:00"),
    ),
    Probe("start year 0", "POST", "/jobs", 422, "start", body_with(start="0000-01-01T00:00Z")),
    Probe("start year 10000", "POST", "/jobs", 422, "start", body_with(start="10000-01-01T00:00Z")),
    Probe(
        "start far future in range",
        "POST",
        "/jobs",
        422,
        "start",
        body_with(start="9999-12-30T00:00Z", end="9999-12-31T00:00Z"),
    ),
    Probe("start not a string", "POST", "/jobs", 422, "start", body_with(start=1663844400)),
    Probe("end before start", "POST", "/jobs", 422, "end", body_with(start="2022-09-12", end="2022-09-05")),
    Probe(
        "users nested 100,000 arrays deep",
        "POST",
        "/jobs",
        422,
        "users",
        b'{"users": ' + deep(100_000, "[", "", "]") + b', "start": "2022-09-05", "end": "2022-09-12"}',
    ),
    Probe(
        "params nested 50,000 objects deep",
        "POST",
        "/jobs",
        422,
        "params",
        b'{"users": ["a"], "start": "2022-09-05", "end": "2022-09-12", "params": '
        + deep(50_000, '{"a": ', "1", "}")
        + b"}",
    ),
    Probe("body an array nested 100,000 deep", "POST", "/jobs", 422, "_schema", deep(100_000, "[", "", "]")),
    Probe("users nested 5 deep", "POST", "/jobs", 422, "users", body_with(users=[[[[["a"]]]]])),
    Probe(
        "max_gap_s as a string", "POST", "/jobs", 422, "params", body_with(method="gap", params={"max_gap_s": "1800"})
    ),
    Probe(
        "max_gap_s as a boolean", "POST", "/jobs", 422, "params", body_with(method="gap", params={"max_gap_s": True})
    ),
    Probe(
        "max_gap_s NaN",
        "POST",
        "/jobs",
        422,
        "params",
        b'{"users": ["a"], "start": "2022-09-05", "end": "2022-09-12", "method": "gap", "params": {"max_gap_s": NaN}}',
    ),
    Probe(
        "max_gap_s Infinity",
        "POST",
        "/jobs",
        422,
        "params",
        b'{"users": ["a"], "start": "2022-09-05", "end": "2022-09-12", "method": "gap", '
        b'"params": {"max_gap_s": Infinity}}',
    ),
    Probe(
        "max_gap_s 1e400",
        "POST",
        "/jobs",
        422,
        "params",
        b'{"users": ["a"], "start": "2022-09-05", "end": "2022-09-12", "method": "gap", '
        b'"params": {"max_gap_s": 1e400}}',
    ),
    Probe(
        "allow_single_cluster as 1",
        "POST",
        "/jobs",
        422,
        "params",
        body_with(method="hdbscan", params={"allow_single_cluster": 1}),
    ),
    Probe(
        "allow_single_cluster as 'true'",
        "POST",
        "/jobs",
        422,
        "params",
        body_with(method="hdbscan", params={"allow_single_cluster": "true"}),
    ),
    Probe(
        "min_cluster_size as 5.0",
        "POST",
        "/jobs",
        422,
        "params",
        body_with(method="hdbscan", params={"min_cluster_size": 5.0}),
    ),
    Probe(
        "min_cluster_size as true",
        "POST",
        "/jobs",
        422,
        "params",
        body_with(method="hdbscan", params={"min_cluster_size": True}),
    ),
    Probe(
        "min_cluster_size huge",
        "POST",
        "/jobs",
        422,
        "params",
        body_with(method="hdbscan", params={"min_cluster_size": 10**30}),
    ),
    Probe("unknown param", "POST", "/jobs", 422, "params", body_with(method="gap", params={"min_cluster_size": 5})),
    Probe("params not an object", "POST", "/jobs", 422, "params", body_with(params=[1, 2])),
    Probe("users a string", "POST", "/jobs", 422, "users", body_with(users="romain")),
    Probe("users empty", "POST", "/jobs", 422, "users", body_with(users=[])),
    Probe("users duplicated", "POST", "/jobs", 422, "users", body_with(users=["a", "a"])),
    Probe("user empty string", "POST", "/jobs", 422, "users", body_with(users=[""])),
    Probe("user with NUL", "POST", "/jobs", 202, None, body_with(users=["a\u0000b"])),
    Probe("method unknown", "POST", "/jobs", 422, "method", body_with(method="kmeans")),
    Probe("group_by a string", "POST", "/jobs", 422, "group_by", body_with(group_by="user")),
    Probe("unknown field", "POST", "/jobs", 422, "format", body_with(format="csv")),
    Probe("api_key in the body", "POST", "/jobs", 422, "api_key", body_with(api_key=KEYS["alpha"])),
    Probe("body null", "POST", "/jobs", 422, None, b"null"),
    Probe("body a list", "POST", "/jobs", 422, None, b"[]"),
    Probe("body a number", "POST", "/jobs", 422, None, b"12"),
    Probe("body empty", "POST", "/jobs", 422, None, b""),
    Probe("body truncated", "POST", "/jobs", 400, None, b'{"users": ["a"'),
    Probe("body not UTF-8", "POST", "/jobs", 400, None, b'{"users": ["\xff\xfe"]}'),
    Probe("body with a BOM", "POST", "/jobs", 400, None, b"\xef\xbb\xbf" + body_with()),
    Probe("body as text/plain", "POST", "/jobs", 415, None, body_with(), headers={"Content-Type": "text/plain"}),
    Probe(
        "Idempotency-Key 256 chars",
        "POST",
        "/jobs",
        422,
        "Idempotency-Key",
        FUTURE,
        headers={"Idempotency-Key": "k" * 256},
    ),
    Probe(
        "Prefer over its maximum length",
        "GET",
        "/jobs/{alpha}",
        422,
        "Prefer",
        headers={"Prefer": "wait=1," + "x" * 300},
    ),
    Probe("Prefer wait negative is ignored", "GET", "/jobs/{alpha}", 200, None, headers={"Prefer": "wait=-5"}),
    # --- query strings: unknown parameters are refused; keys only in Authorization ------------
    Probe("list with unknown parameter", "GET", "/jobs?format=csv", 422, "format"),
    Probe("key in the query string", "GET", f"/jobs?api_key={KEYS['alpha']}", 422, "api_key"),
    # refused whatever the headers say: with a valid key, without one, on every path and method
    Probe("key only in the query string", "GET", f"/jobs?api_key={KEYS['alpha']}", 422, "api_key", key=None),
    Probe("key in the query string of a submit", "POST", f"/jobs?api_key={KEYS['alpha']}", 422, "api_key", FUTURE),
    Probe("key in the query string of a poll", "GET", f"/jobs/{{alpha}}?api_key={KEYS['alpha']}", 422, "api_key"),
    Probe("access_token in the query string", "GET", f"/jobs?access_token={KEYS['alpha']}", 422, "access_token"),
    Probe("key in the query string of healthz", "GET", f"/healthz?api_key={KEYS['alpha']}", 422, "api_key", key=None),
    Probe("key in the query string of the page", "GET", f"/?API_KEY={KEYS['alpha']}", 422, "API_KEY", key=None),
    Probe("submit with an unknown parameter", "POST", "/jobs?format=csv", 422, "format", FUTURE),
    Probe("key in X-API-Key", "GET", "/jobs", 401, None, key=None, headers={"X-API-Key": KEYS["alpha"]}),
    Probe("poll with unknown parameter", "GET", "/jobs/{alpha}?verbose=1", 422, "verbose"),
    Probe("delete with unknown parameter", "DELETE", "/jobs/{beta}?force=1", 422, "force", key="beta"),
    Probe("sessions with unknown parameter", "GET", "/jobs/{done}/sessions?format=csv", 422, "format"),
    Probe("healthz with a parameter", "GET", "/healthz?x=1", 200, None, key=None),
    Probe("list limit 0", "GET", "/jobs?limit=0", 422, "limit"),
    Probe("list limit huge", "GET", "/jobs?limit=99999999999999999999", 422, "limit"),
    Probe("list limit not a number", "GET", "/jobs?limit=ten", 422, "limit"),
    Probe("list cursor garbage", "GET", "/jobs?cursor=%25%25%25", 422, "cursor"),
    Probe("list status unknown", "GET", "/jobs?status=done", 422, "status"),
    Probe("list query not UTF-8", "GET", "/jobs?status=%ff", 422, "status"),
    Probe("sessions limit negative", "GET", "/jobs/{done}/sessions?limit=-1", 422, "limit"),
    # the server decodes a query string with U+FFFD for invalid UTF-8: such a user matches nobody
    Probe("sessions user not UTF-8", "GET", "/jobs/{done}/sessions?user=%ED%A0%80", 200),
    Probe("sessions cursor garbage", "GET", "/jobs/{done}/sessions?cursor=AAAA", 422, "cursor"),
    Probe("sessions of a queued job", "GET", "/jobs/{alpha}/sessions", 409),
    # --- methods and paths ------------------------------------------------------------------
    Probe("PUT /jobs", "PUT", "/jobs", 405),
    Probe("PATCH a job", "PATCH", "/jobs/{alpha}", 405),
    Probe("no such path", "GET", "/nope", 404),
    Probe("jobs with a trailing slash", "GET", "/jobs/", 404),
    # --- authentication -------------------------------------------------------------------------
    Probe("no key", "GET", "/jobs", 401, key=None),
    Probe("unknown key", "GET", "/jobs", 401, key=None, headers={"Authorization": "Bearer not-a-key"}),
    Probe("basic auth", "GET", "/jobs", 401, key=None, headers={"Authorization": "Basic YTpi"}),
    Probe("bearer with spaces only", "GET", "/jobs", 401, key=None, headers={"Authorization": "Bearer  x"}),
]

# Sent as raw bytes: what HTTP clients would refuse to send (the server's own answers).
RAW_PROBES: list[tuple[str, bytes, int]] = [
    ("request line over 4094 bytes", b"GET /jobs?" + b"q" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
    (
        "150 header fields",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n",
        431,
    ),
    (
        "a header field over 8190 bytes",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: secret-" + b"a" * 9000 + b"\r\n\r\n",
        431,
    ),
    (
        "a control character in Authorization",
        b"GET /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer secret-\x01key\r\n\r\n",
        400,
    ),
    ("DEL in a header name", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad\x7f: secret\r\n\r\n", 400),
    ("NUL in the path", b"GET /\x00healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    ("not HTTP", b"BREW /healthz HTCPCP/1.0\r\n\r\n", 400),
    ("Content-Length not a number", b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ten\r\n\r\n", 400),
    (
        "Content-Length and chunked",
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "Authorization: Bearer without a token",
        b"GET /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \r\n\r\n",
        401,
    ),
    ("Transfer-Encoding gzip", b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # no worker: jobs stay queued; the succeeded one is played through the job store
    live = LiveServer(tmp_path_factory.mktemp("probes"), RATE_LIMIT_PER_S="0", AUTH_FAILURES_BURST="100000").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def ids(server: LiveServer) -> dict[str, str]:
    with httpx.Client(base_url=server.base, timeout=30) as http:

        def submit(key: str, body: dict) -> str:
            resp = http.post("/jobs", json=body, headers=bearer(key))
            assert resp.status_code == 202, resp.text
            return resp.json()["id"]

        alpha, beta, done = submit("alpha", FUTURE), submit("beta", FUTURE), submit("alpha", PAST)
    play_worker(
        JobStore.from_url(server.redis.url), done, [[session("anes", k) for k in range(3)], [session("romain", 1)]]
    )
    return {"alpha": alpha, "beta": beta, "done": done, "random": str(uuid.uuid4()), "alpha_hex": uuid.UUID(alpha).hex}


def send(server: LiveServer, probe: Probe, ids: dict[str, str]) -> httpx.Response:
    headers = dict(bearer(probe.key)) if probe.key else {}
    content: bytes | None = None
    if probe.body is not None:
        content = probe.body if isinstance(probe.body, bytes) else json.dumps(probe.body).encode()
        headers["Content-Type"] = "application/json"
    headers.update(probe.headers)
    with httpx.Client(base_url=server.base, timeout=60) as http:
        return http.request(probe.method, probe.path.format(**ids), content=content, headers=headers)


def named(problem: dict[str, Any], fieldname: str) -> bool:
    """Does the problem's ``errors`` name the field (at the top level, or by its dotted path)?"""
    errors = problem.get("errors")
    return isinstance(errors, dict) and fieldname in errors


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_probe(server: LiveServer, ids: dict[str, str], probe: Probe) -> None:
    resp = send(server, probe, ids)
    assert resp.status_code == probe.status, resp.text[:500]
    assert resp.headers["x-request-id"]
    if resp.status_code == 405:
        assert resp.headers["allow"]
    if resp.status_code >= 400:
        assert resp.headers["content-type"] == PROBLEM, resp.headers
        problem = resp.json()
        assert problem["status"] == resp.status_code and problem["title"]
        if probe.fieldname is not None:
            assert named(problem, probe.fieldname), problem
    for secret in KEYS.values():
        assert secret not in resp.text


@pytest.mark.parametrize(("name", "raw", "status"), RAW_PROBES, ids=[r[0] for r in RAW_PROBES])
def test_raw_probe(server: LiveServer, name: str, raw: bytes, status: int) -> None:
    got, headers, body = parse_answer(server.raw(raw))
    assert got == status
    assert headers["content-type"] == PROBLEM and headers["x-request-id"]
    problem = json.loads(body)
    assert problem["status"] == status and problem["detail"]
    assert b"secret" not in body  # nothing of the offending request is echoed


def test_another_keys_job_and_a_crafted_id_answer_exactly_like_a_random_id(
    server: LiveServer, ids: dict[str, str]
) -> None:
    """One key learns nothing of another key's jobs: the answers differ in nothing but the id named."""

    def answer(path: str, key: str) -> tuple[int, dict[str, Any]]:
        with httpx.Client(base_url=server.base, timeout=30) as http:
            resp = http.get(path, headers=bearer(key))
        body = resp.json()
        body.pop("request_id", None)
        return resp.status_code, json.loads(json.dumps(body).replace(path.split("/")[2], "<id>"))

    random = answer(f"/jobs/{ids['random']}", "beta")
    assert random[0] == 404
    assert answer(f"/jobs/{ids['alpha']}", "beta") == random
    assert answer(f"/jobs/{ids['alpha']}:done", "beta")[0] == 404
    assert answer(f"/jobs/{ids['alpha']}:done", "alpha") == answer(f"/jobs/{ids['alpha']}:done", "beta")


def test_the_openapi_document_is_whole(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        doc = http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs, "no $ref at all?"
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert {"HdbscanParams", "GapParams"} <= set(schemas)
    assert "Error" not in schemas  # the problems are Problem; no unused schema of another shape
    used = {r.rsplit("/", 1)[1] for r in refs}
    assert set(schemas) <= used, set(schemas) - used  # nothing unused (flask-smorest's pagination)
    params = schemas["JobArgs"]["properties"]["params"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in params["anyOf"]} == {"HdbscanParams", "GapParams"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "summary" in op:
                assert "`" not in op["summary"], (path, method, op["summary"])
    # as the service applies them: the documented defaults and bounds of the parameters
    hdbscan, gap = schemas["HdbscanParams"]["properties"], schemas["GapParams"]["properties"]
    assert hdbscan["min_cluster_size"]["type"] == "integer" and hdbscan["min_cluster_size"]["default"] == 5
    assert hdbscan["cluster_selection_epsilon_s"]["default"] == 1200
    assert hdbscan["allow_single_cluster"] == {**hdbscan["allow_single_cluster"], "type": "boolean", "default": True}
    assert gap["max_gap_s"]["type"] == "number" and gap["max_gap_s"]["default"] == 1800
    assert gap["max_gap_s"]["exclusiveMinimum"] is True or gap["max_gap_s"].get("minimum") is not None


def test_failed_authentication_is_rate_limited_per_client_address(tmp_path) -> None:
    """After a burst of wrong keys, the address gets 429 with Retry-After for any key (a guess is
    refused before it is judged), while requests without a key are not throttled as guesses."""
    live = LiveServer(tmp_path, AUTH_FAILURES_BURST="5", AUTH_FAILURES_PER_S="0.01").start()
    try:
        with httpx.Client(base_url=live.base, timeout=30) as http:
            wrong = {"Authorization": "Bearer not-a-key-of-ours"}
            answers = [http.get("/jobs", headers=wrong).status_code for _ in range(8)]
            assert answers == [401] * 5 + [429] * 3
            blocked = http.get("/jobs", headers=bearer("alpha"))
            assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
            assert blocked.headers["content-type"] == PROBLEM and KEYS["alpha"] not in blocked.text
            assert http.get("/jobs").status_code == 401  # no key at all: still told to send one
            assert http.get("/healthz").status_code == 200
    finally:
        live.stop()


# --- issue 17: the categories of the second hostile round, each through the real server -------
def answer_within(server: LiveServer, data: bytes, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` (a request whose body may never be finished) and read the first answer; a
    server that waits for the rest of the body fails the read after ``timeout`` (a bound on a
    hang, not a timing assertion)."""
    with server.connect() as sock:
        sock.settimeout(timeout)
        sock.sendall(data)
        return parse_answer(read_answer(sock))


def test_a_number_of_thousands_of_digits_is_a_422_naming_its_field(server: LiveServer) -> None:
    long_int, long_float = b"9" * 5000, b"1." + b"0" * 5000
    bodies = {
        "params": b'{"users": ["a"], "start": "2022-09-05", "end": "2022-09-12", "method": "gap", '
        b'"params": {"max_gap_s": %s}}' % long_int,
        "users": b'{"users": [%s], "start": "2022-09-05", "end": "2022-09-12"}' % long_int,
        "unknown": b'{"users": ["a"], "start": "2022-09-05", "end": "2022-09-12", "unknown": -%s}' % long_int,
        "start": b'{"users": ["a"], "start": %s, "end": "2022-09-12"}' % long_float,
        "_schema": long_int,
    }
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for fieldname, body in bodies.items():
            resp = http.post("/jobs", content=body, headers={**bearer("alpha"), "Content-Type": "application/json"})
            assert resp.status_code == 422 and resp.headers["content-type"] == PROBLEM, (fieldname, resp.text[:300])
            assert named(resp.json(), fieldname), resp.json()
        # digits in a string are no number: a user named by 200 digits is a user
        resp = http.post("/jobs", json={**FUTURE, "users": ["7" * 200]}, headers=bearer("alpha"))
        assert resp.status_code == 202, resp.text
        # and the query: a limit of 4,000 digits is a 422 naming it
        resp = http.get("/jobs", params={"limit": "9" * 4000}, headers=bearer("alpha"))
        assert resp.status_code == 422 and named(resp.json(), "limit")
    assert "Traceback" not in server.log.read_text()


def test_the_body_is_bounded_after_authentication_and_never_waited_for(server: LiveServer) -> None:
    chunked_head = (
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    )
    key = f"Authorization: Bearer {KEYS['alpha']}\r\n".encode()
    # no key: the 401 comes before a byte of the body is read (the body never ends here)
    status, headers, body = answer_within(server, chunked_head + b"\r\n" + b"100000\r\n" + b"x" * 1000)
    assert status == 401 and headers["content-type"] == PROBLEM and headers["x-request-id"]
    # a wrong key: counted and refused before the body too
    wrong = b"Authorization: Bearer not-a-key\r\n"
    status, headers, _ = answer_within(server, chunked_head + wrong + b"\r\n" + b"100000\r\n" + b"x" * 1000)
    assert status == 401 and headers["x-request-id"]
    # a chunk declaring more than the limit: 413 at once, without waiting for its bytes
    status, headers, body = answer_within(server, chunked_head + key + b"\r\n" + b"fffffffffff\r\n{")
    assert status == 413 and headers["content-type"] == PROBLEM and headers["x-request-id"]
    assert json.loads(body)["status"] == 413
    # chunks adding up past the limit, each small
    status, headers, _ = answer_within(
        server, chunked_head + key + b"\r\n" + b"80000\r\n" + b" " * 0x80000 + b"\r\n" + b"80001\r\n"
    )
    assert status == 413 and headers["x-request-id"]
    # a declared Content-Length over the limit: 413 at once, even before the key is judged
    status, headers, _ = answer_within(
        server,
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 9999999999\r\n\r\n{",
    )
    assert status == 413 and headers["content-type"] == PROBLEM and headers["x-request-id"]
    # a malformed chunk: the server's 400, as problem+json with a request id
    status, headers, _ = answer_within(server, chunked_head + key + b"\r\n" + b"zz\r\nabc\r\n0\r\n\r\n")
    assert status == 400 and headers["content-type"] == PROBLEM and headers["x-request-id"]
    # routes that take no body answer without waiting for one
    for path in (b"/healthz", b"/jobs"):
        status, headers, _ = answer_within(
            server,
            b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + key + b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc",
        )
        assert status == 200 and headers["x-request-id"], path
        status, _, _ = answer_within(
            server, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + key + b"Content-Length: 500\r\n\r\nabc"
        )
        assert status == 200, path


def test_unauthenticated_bodies_are_never_read(server: LiveServer) -> None:
    """40 unauthenticated 1 MiB chunked bodies, left open: each is refused with its 401 without
    its body being read, so the API's memory does not grow with them."""
    import psutil

    def rss() -> int:
        proc = psutil.Process(server.proc.pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children()])

    before = rss()
    socks = []
    try:
        for _ in range(40):
            sock = server.connect()
            sock.sendall(
                b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n100000\r\n" + b"x" * (1 << 16)
            )
            socks.append(sock)
        for sock in socks:
            status, _, _ = parse_answer(read_answer(sock))
            assert status == 401
        assert rss() - before < 40 << 20  # far below the 40 MiB the bodies would hold if read
    finally:
        for sock in socks:
            sock.close()


def test_a_listing_cursor_is_sealed_for_its_key_and_tells_no_counter(server: LiveServer, ids: dict[str, str]) -> None:
    import base64

    with httpx.Client(base_url=server.base, timeout=30) as http:
        extra = [
            http.post("/jobs", json={**FUTURE, "users": [f"cursor-{i}"]}, headers=bearer("alpha")).json()["id"]
            for i in range(2)
        ]
        first = http.get("/jobs", params={"limit": 1}, headers=bearer("alpha")).json()
        again = http.get("/jobs", params={"limit": 1}, headers=bearer("alpha")).json()
        cursor = first["next_cursor"]
        assert cursor and first["jobs"] == again["jobs"]
        assert again["next_cursor"] != cursor  # sealed afresh each time: nothing to compare
        with redis.Redis.from_url(server.redis.url) as client:
            seqs = {int(client.hget(f"sz:job:{job_id}", "seq")) for job_id in [*extra, ids["alpha"], ids["beta"]]}
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        assert len(raw) == 36 and raw not in {str(seq).encode() for seq in seqs}  # no longer the counter in digits
        for seq in seqs:  # nor as a plain 64-bit integer
            assert seq.to_bytes(8, "big") not in raw and seq.to_bytes(8, "little") not in raw
        # the next page follows for alpha; the same cursor is garbage for beta, as is an edited one
        second = http.get("/jobs", params={"limit": 1, "cursor": cursor}, headers=bearer("alpha"))
        assert second.status_code == 200 and second.json()["jobs"][0]["id"] != first["jobs"][0]["id"]
        stolen = http.get("/jobs", params={"limit": 1, "cursor": cursor}, headers=bearer("beta"))
        edited = http.get(
            "/jobs",
            params={"limit": 1, "cursor": cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")},
            headers=bearer("alpha"),
        )
        for resp in (stolen, edited):
            assert resp.status_code == 422 and named(resp.json(), "cursor")
        assert stolen.json()["errors"] == edited.json()["errors"]
        # a sessions cursor pages its job only
        page = http.get(f"/jobs/{ids['done']}/sessions", params={"limit": 1}, headers=bearer("alpha"))
        sessions_cursor = page.json()["next_cursor"]
        assert sessions_cursor
        for path in ("/jobs", f"/jobs/{ids['alpha']}/sessions"):
            resp = http.get(path, params={"cursor": sessions_cursor}, headers=bearer("alpha"))
            assert resp.status_code in (422, 409), resp.text
            if resp.status_code == 422:
                assert named(resp.json(), "cursor")


def test_only_our_host_names_are_answered_and_nothing_redirects_to_another(
    server: LiveServer, ids: dict[str, str]
) -> None:
    port = server.port
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert http.get("/jobs", headers={**bearer("alpha"), "Host": host}).status_code == 200, host
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example"):
            resp = http.get("/jobs", headers={**bearer("alpha"), "Host": host})
            assert resp.status_code == 400 and resp.headers["content-type"] == PROBLEM, host
            assert resp.headers["x-request-id"] and "Location" not in resp.headers
        # the path that used to answer 308 to the Host it was sent, before authentication
        for host, status in (("evil.example", 400), (f"127.0.0.1:{port}", 404)):
            for key in (None, "alpha"):
                resp = http.get(f"/jobs//{ids['alpha']}", headers={"Host": host, **(bearer(key) if key else {})})
                assert resp.status_code == status, (host, key, resp.text)  # no such route: 404 with or without a key
                assert "Location" not in resp.headers and resp.headers["content-type"] == PROBLEM
        # probes and Prometheus reach the API by address
        assert http.get("/healthz", headers={"Host": "10.1.2.3:8000"}).status_code == 200


def test_the_keyless_stack_answers_only_its_own_names(tmp_path) -> None:
    """Without keys (make up, make demo) a page on another site reaching the API by DNS rebinding
    can neither read, submit nor delete; ALLOWED_HOSTS names the hosts when the API has another."""
    live = LiveServer(tmp_path, workers=1, AUTH_REQUIRED="false", API_KEYS="").start()
    try:
        with httpx.Client(base_url=live.base, timeout=30) as http:
            job = http.post("/jobs", json=FUTURE)
            assert job.status_code == 202, job.text
            job_id = job.json()["id"]
            rebound = {"Host": f"attacker.example:{live.port}"}
            for method, path, body in (
                ("GET", "/jobs", None),
                ("POST", "/jobs", FUTURE),
                ("GET", f"/jobs/{job_id}", None),
                ("DELETE", f"/jobs/{job_id}", None),
                ("GET", "/", None),
                ("GET", "/docs", None),
            ):
                resp = http.request(method, path, json=body, headers=rebound)
                assert resp.status_code == 400 and resp.headers["content-type"] == PROBLEM, (method, path)
            assert http.get(f"/jobs/{job_id}").json()["status"] == "queued"  # still there
    finally:
        live.stop()
    live = LiveServer(tmp_path / "named", workers=1, ALLOWED_HOSTS="sessionizer.test").start()
    try:
        with httpx.Client(base_url=live.base, timeout=30) as http:
            assert http.get("/jobs", headers={**bearer("alpha"), "Host": "sessionizer.test"}).status_code == 200
            assert http.get("/jobs", headers=bearer("alpha")).status_code == 400  # 127.0.0.1 is not named
    finally:
        live.stop()


def test_every_405_says_allow_and_docs_cannot_be_framed(server: LiveServer, ids: dict[str, str]) -> None:
    wrong = [
        ("PUT", "/jobs", {"GET", "POST"}),
        ("PATCH", "/jobs/{alpha}", {"GET", "DELETE"}),
        ("DELETE", "/jobs/{alpha}/cancel", {"POST"}),
        ("POST", "/jobs/{done}/sessions", {"GET"}),
        ("POST", "/healthz", {"GET"}),
        ("PUT", "/readyz", {"GET"}),
        ("DELETE", "/", {"GET"}),
        ("POST", "/docs", {"GET"}),
        ("PUT", "/openapi.json", {"GET"}),
        ("POST", "/metrics", {"GET"}),
    ]
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for method, path, allowed in wrong:
            resp = http.request(method, path.format(**ids), headers=bearer("alpha"))
            assert resp.status_code == 405 and resp.headers["content-type"] == PROBLEM, (method, path)
            assert allowed <= {m.strip() for m in resp.headers["Allow"].split(",")}, (method, path, resp.headers)
            assert method not in resp.headers["Allow"]
        for path in ("/docs", "/", "/openapi.json", "/jobs"):
            resp = http.get(path, headers=bearer("alpha"))
            assert resp.status_code == 200
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"], path
            assert resp.headers["X-Frame-Options"] == "DENY", path


class CuttingProxy:
    """A loopback TCP proxy to the server that cuts its first ``cuts`` connections 40 bytes into
    their first answer's body (a stream dropped mid-way); later connections pass whole."""

    def __init__(self, target_port: int, cuts: int = 1) -> None:
        import socket
        import threading

        self.target_port, self.connections, self.cuts = target_port, 0, cuts
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            cut = self.connections <= self.cuts
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, cut), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, cut: bool) -> None:
        seen = b""
        try:
            while data := src.recv(65536):
                if cut:
                    seen += data
                    head_end = seen.find(b"\r\n\r\n")
                    if head_end >= 0 and len(seen) >= head_end + 4 + 40:
                        dst.sendall(seen[: head_end + 4 + 40])
                        break
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_every_format_pages_with_link_and_the_client_follows_and_resumes(
    server: LiveServer, ids: dict[str, str], tmp_path
) -> None:
    from sessionizer_client import Client, Job, RetryPolicy
    from sessionizer_client.cli import write_sessions

    path = f"/jobs/{ids['done']}/sessions"
    with httpx.Client(base_url=server.base, timeout=30, headers=bearer("alpha")) as http:
        whole = [
            json.loads(line) for line in http.get(path, headers={"Accept": "application/x-ndjson"}).text.splitlines()
        ]
        whole_csv = http.get(path, headers={"Accept": "text/csv"}).text
        assert len(whole) == 4
        for accept in ("application/x-ndjson", "text/csv", "application/json"):
            url, pages = f"{path}?limit=1", []
            while url:
                resp = http.get(url, headers={"Accept": accept})
                assert resp.status_code == 200 and resp.headers["content-type"].startswith(accept)
                pages.append(resp.text)
                url = resp.links.get("next", {}).get("url")
                assert url is None or (url.startswith(path + "?") and "limit=1" in url)  # relative, same query
            assert len(pages) == 4, (accept, pages)
            if accept == "text/csv":
                header = whole_csv.splitlines()[0]
                assert all(p.splitlines()[0] == header for p in pages)
                assert [p.splitlines()[1] for p in pages] == whole_csv.splitlines()[1:]
            elif accept == "application/x-ndjson":
                assert [json.loads(p) for p in pages] == whole
        listing = http.get("/jobs", params={"limit": 1})
        assert listing.links["next"]["url"].startswith("/jobs?") and "cursor=" in listing.links["next"]["url"]

    # the client reads one stream; cut mid-body, it resumes page by page (two sessions a page
    # here) following Link, without a row lost or repeated; a page cut mid-body is asked again
    for page_size, cuts in ((2, 1), (1, 2)):
        proxy = CuttingProxy(server.port, cuts=cuts)
        client = Client(f"http://127.0.0.1:{proxy.port}", api_key=KEYS["alpha"], retry=RetryPolicy(backoff_s=0.01))
        try:
            with Client(server.base, api_key=KEYS["alpha"]) as direct:
                job = Job(client, direct.job(ids["done"]).data)  # the proxy's first request: the sessions
            job.page_size = page_size
            assert list(job._rows()) == whole
            assert proxy.connections == cuts + 1  # the stream was cut (and the first page too when cuts=2)
            assert [s.user for s in job.sessions()] == [r["user"] for r in whole]
        finally:
            client.close()
            proxy.close()
    # and the command line's writer: the service's CSV exactly, resumed through the pages
    proxy = CuttingProxy(server.port)
    client = Client(f"http://127.0.0.1:{proxy.port}", api_key=KEYS["alpha"], retry=RetryPolicy(backoff_s=0.01))
    try:
        with Client(server.base, api_key=KEYS["alpha"]) as direct:
            job = Job(client, direct.job(ids["done"]).data)
        job.page_size = 1
        write_sessions(job, "csv", str(tmp_path / "s.csv"))
        assert (tmp_path / "s.csv").read_text() == whole_csv and proxy.connections == 2
    finally:
        client.close()
        proxy.close()


def test_cancel_of_a_finished_job_is_a_409_and_a_204_has_no_body_type(server: LiveServer, ids: dict[str, str]) -> None:
    with httpx.Client(base_url=server.base, timeout=30, headers=bearer("alpha")) as http:
        resp = http.post(f"/jobs/{ids['done']}/cancel")
        assert resp.status_code == 409 and resp.headers["content-type"] == PROBLEM
        assert resp.json()["job_status"] == "succeeded" and "succeeded" in resp.json()["detail"]
        assert http.get(f"/jobs/{ids['done']}").json()["status"] == "succeeded"
        job_id = http.post("/jobs", json={**FUTURE, "users": ["to-cancel"]}).json()["id"]
        first, again = http.post(f"/jobs/{job_id}/cancel"), http.post(f"/jobs/{job_id}/cancel")
        assert (first.status_code, again.status_code) == (202, 202)  # a retried cancel is not an error
        assert first.json()["status"] == again.json()["status"] == "cancelled"
        gone = http.delete(f"/jobs/{job_id}")
        assert gone.status_code == 204 and gone.content == b""
        assert "content-type" not in gone.headers and gone.headers["x-request-id"]


def test_the_local_stack_keeps_its_passwords_and_redis_and_flower_require_them(tmp_path) -> None:
    import base64
    import os
    import stat
    import subprocess

    import psutil

    from devstack import ROOT, flower_command, free_port, start_redis, wait_http
    from devstack.demo import local_secrets, redacted

    # made once, mode 0600, the same at the next start
    path, made = local_secrets(tmp_path / "var")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert made["REDIS_PASSWORD"] and made["FLOWER_BASIC_AUTH"].startswith("admin:")
    assert local_secrets(tmp_path / "var") == (path, made)
    with start_redis(tmp_path / "redis", password=made["REDIS_PASSWORD"]) as own:
        # no password, no data; the password is on no command line another local user can read
        with pytest.raises(redis.AuthenticationError), redis.Redis(port=own.port) as anonymous:
            anonymous.ping()
        with redis.Redis.from_url(own.url) as client:
            assert client.ping()
        assert made["REDIS_PASSWORD"] not in " ".join(psutil.Process(own.proc.pid).cmdline())
        assert made["REDIS_PASSWORD"] not in redacted(own.url)
        env = {**os.environ, "REDIS_URL": own.url, "PYTHONUNBUFFERED": "1"}
        port = free_port()
        refused = subprocess.run(
            flower_command("127.0.0.1", port),
            cwd=ROOT,
            env={**env, "FLOWER_BASIC_AUTH": ""},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2 and "login" in refused.stderr  # Flower never runs open
        with open(tmp_path / "flower.log", "wb") as log:
            flower = subprocess.Popen(
                flower_command("127.0.0.1", port),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**env, "FLOWER_BASIC_AUTH": made["FLOWER_BASIC_AUTH"]},
            )
        try:
            try:  # Flower starts slowly on a loaded machine: a patient wait, and its log if it never answers
                wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout=120)
            except RuntimeError:
                pytest.fail("Flower did not start:\n" + (tmp_path / "flower.log").read_text()[-3000:])
            login = {"Authorization": "Basic " + base64.b64encode(made["FLOWER_BASIC_AUTH"].encode()).decode()}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                assert http.get("/api/workers").status_code == 401
                assert http.get("/api/workers", headers=login).status_code == 200
                assert http.get("/api/workers", headers={**login, "Host": f"localhost:{port}"}).status_code == 200
                for host in ("rebound.example", f"rebound.example:{port}"):  # DNS rebinding
                    assert http.get("/api/workers", headers={**login, "Host": host}).status_code == 400
                    assert http.get("/", headers={"Host": host}).status_code == 400
            assert made["FLOWER_BASIC_AUTH"] not in " ".join(psutil.Process(flower.pid).cmdline())
        finally:
            flower.terminate()
            flower.wait(30)
