"""`make compose-check`: the image built and the compose stack run in containers, with podman.

Each step prints its name, then ``ok`` and its time (or what failed, and the end of the logs):

 1. bases     local stand-ins for python:3.11-slim, Redis and Prometheus (deploy/podman/base-images.sh)
 2. image     sessionizer:local from the Dockerfile, pip reading the index the host's pip is
              configured with (build arguments); its size, user, packages and history checked
 3. up        docker-compose.yml + docker-compose.podman.yml (esproto for Elasticsearch) under
              podman-compose, with a fresh .env of random passwords
 4. healthy   every container's own healthcheck passes
 5. load      the load-demo service bulk-loads the demo events into the elasticsearch service
 6. job       a job submitted from the host through the API container's published port
 7. host      the same job on the host-run stack (devstack/), reading the same events:
              the same sessions
 8. watch     Prometheus scraped the API and every worker; Flower refuses a request without its password
 9. scale     workers scaled to 2: both healthy and scraped, and a fresh job runs again
10. down      every container stopped by SIGTERM (none killed at the end of its grace period),
              then every container, network, volume and pod of the project removed

podman runs as ``podman --runtime runc`` with explicit ulimits (crun refuses this machine's
hybrid cgroups), set for every podman call, podman-compose's included, by a containers.conf of
this run (CONTAINERS_CONF). podman-compose comes from PyPI into a virtual environment in the
cache folder ($SESSIONIZER_PODMAN_CACHE, default /var/tmp/sessionizer-podman), never the project's.
Nothing here reads or writes the user's var/ or .env; the compose project is ``sessionizer-check``.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from any folder

from devstack import Stack, api_command, free_port, wait_http, worker_command  # noqa: E402
from webapp.auth import digest  # noqa: E402

PROJECT = "sessionizer-check"
IMAGE = "sessionizer:local"
PODMAN_COMPOSE = "podman-compose==1.6.0"
CACHE = Path(os.environ.get("SESSIONIZER_PODMAN_CACHE", "/var/tmp/sessionizer-podman"))
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.podman.yml"]
JOB = {"users": ["romain", "anes", "claire"], "start": "2022-09-05T00:00Z", "end": "2022-10-03T00:00Z"}
LABEL = f"io.podman.compose.project={PROJECT}"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


class CheckFailed(Exception):
    pass


@dataclass
class Run:
    """One check: its folder, secrets, ports and the environment every podman call gets."""

    tmp: Path
    env: dict[str, str]
    dotenv: dict[str, str]
    client_key: str
    ports: dict[str, int]
    times: list[tuple[str, float]] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        return [self.client_key] + [v for k, v in self.dotenv.items() if "PASSWORD" in k or k.endswith("API_KEY")]

    def masked(self, text: str) -> str:
        for value in self.secrets:
            text = text.replace(value, "***")
        return text

    def sh(
        self, args: list[str], *, check: bool = True, timeout: float = 900, log: str | None = None, quiet: bool = False
    ) -> subprocess.CompletedProcess:
        """A command in the checkout with this run's environment; its output goes to ``log`` (in
        the run's folder), shown masked when it fails."""
        proc = subprocess.run(args, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        if log:
            with open(self.tmp / log, "a") as f:
                f.write(f"$ {' '.join(args)}\n{out}\n")
        if check and proc.returncode != 0:
            raise CheckFailed(f"{' '.join(args[:4])} ... exited {proc.returncode}:\n{self.masked(out)[-4000:]}")
        if not quiet and out.strip() and not log:
            print(self.masked(out).rstrip(), flush=True)
        return proc

    def podman(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.sh(["podman", *args], **kw)

    def compose(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        files = [a for f in [*COMPOSE_FILES, str(self.tmp / "ports.yml")] for a in ("-f", f)]
        cmd = [
            str(CACHE / "tools" / "bin" / "podman-compose"),
            "--project-name",
            PROJECT,
            "--env-file",
            str(self.tmp / ".env"),
            *files,
            *args,
        ]
        return self.sh(cmd, log="podman-compose.log", **kw)

    @contextmanager
    def step(self, name: str, what: str) -> Iterator[None]:
        print(f"[compose-check] {name}: {what}", flush=True)
        start = time.monotonic()
        yield
        took = time.monotonic() - start
        self.times.append((name, took))
        print(f"[compose-check] {name}: ok in {took:.1f} s", flush=True)


# -- 1. base images ---------------------------------------------------------------------------


def podman_compose_tool(run: Run) -> None:
    """podman-compose from PyPI, in a virtual environment of the cache folder."""
    venv = CACHE / "tools"
    if not (venv / "bin" / "podman-compose").exists():
        run.sh([sys.executable, "-m", "venv", "--clear", str(venv)])
        run.sh([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", PODMAN_COMPOSE])


# -- 2. the project's image -------------------------------------------------------------------


def host_pip_config(env: dict[str, str] | None = None) -> dict[str, str]:
    """What ``pip config list`` says the host's pip uses (its files merged, then PIP_* variables)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True, env=env
    ).stdout
    found: dict[str, str] = {}
    for section in ("global", "install", ":env:"):  # later sections win, as in pip
        for line in out.splitlines():
            key, _, value = line.partition("=")
            if key.startswith(section + "."):
                found[key.split(".", 1)[1]] = value.strip().strip("'\"")
    return found


def build_options(config: dict[str, str]) -> list[str]:
    """``podman build`` options carrying the host's package index: the index URLs as build
    arguments (the Dockerfile declares them), each ``file://`` index's folder mounted read-only
    at its own path, and the CA bundle the host's pip trusts mounted over the image's for the build only
    (a mount is no part of any layer). An index URL with credentials is refused: build arguments
    are readable in the image's history."""
    index = config.get("index-url", "https://pypi.org/simple")
    extra = config.get("extra-index-url", "").split()
    opts = ["--build-arg", f"PIP_INDEX_URL={index}"]
    if extra:
        opts += ["--build-arg", f"PIP_EXTRA_INDEX_URL={' '.join(extra)}"]
    for url in [index, *extra]:
        if re.match(r"^[a-z+]+://[^/@]+@", url):
            raise CheckFailed(
                "the host's pip index URL carries credentials; a build argument would keep "
                "them in the image's history: give it to the build as a secret instead"
            )
        if url.startswith("file://") and Path(url[7:]).is_dir():
            local = Path(url[7:]).resolve().parent  # a simple index's pages link to ../files/
            opts += ["-v", f"{local}:{local}:ro"]
    cert = config.get("cert")
    if cert and Path(cert).is_file():
        opts += ["-v", f"{cert}:/etc/ssl/certs/ca-certificates.crt:ro"]
    return opts


def build_image(run: Run) -> None:
    opts = build_options(host_pip_config())
    run.podman("build", "--pull=never", *opts, "-t", IMAGE, "-f", "Dockerfile", ".", log="build.log", timeout=1800)


def check_image(run: Run) -> dict[str, Any]:
    """Small and safe: runtime dependencies only, not root, nothing secret in its history or files."""
    info = json.loads(run.podman("image", "inspect", IMAGE, quiet=True).stdout)[0]
    user = info["Config"].get("User", "")
    uid = run.podman("run", "--rm", IMAGE, "id", "-u", quiet=True).stdout.strip()
    if user in ("", "root", "0") or uid == "0":
        raise CheckFailed(f"the image runs as root (User {user!r}, uid {uid})")
    deps = ROOT / "deploy" / "podman" / "image_deps.py"
    found = json.loads(
        run.podman(
            "run", "--rm", "-v", f"{deps}:/tmp/image_deps.py:ro", IMAGE, "python", "/tmp/image_deps.py", quiet=True
        ).stdout
    )
    if found["unneeded"]:
        raise CheckFailed(f"installed in the image but not needed by the project: {found['unneeded']}")
    if "sessionizer" not in found["installed"]:
        raise CheckFailed(f"the project is not installed in the image: {found['installed']}")
    history = run.podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE, quiet=True).stdout
    if re.search(r"[a-z+]+://[^/\s@]+:[^/\s@]+@", history) or re.search(r"(?i)(password|token|secret)=", history):
        raise CheckFailed("a credential in the image's history:\n" + history)
    app = run.podman("run", "--rm", IMAGE, "sh", "-c", "ls -A /app /app/var /app/config", quiet=True).stdout.split()
    leaked = {".env", "credentials.yml", "tests", ".git", ".venv", "esproto"} & set(app)
    if leaked:
        raise CheckFailed(f"in the image's /app: {sorted(leaked)}")
    size = int(info["Size"])
    layers = [ln for ln in history.splitlines() if ln.strip()]
    print(
        f"  {IMAGE}: {size / 1e6:.0f} MB, user {user} (uid {uid}), {len(found['installed'])} "
        f"distributions, all needed; {len(layers)} history entries, no credential",
        flush=True,
    )
    return {"size_mb": round(size / 1e6), "user": user}


# -- 3-4. the stack up and healthy ------------------------------------------------------------


def containers(run: Run) -> list[dict[str, Any]]:
    return json.loads(
        run.podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "json", quiet=True).stdout or "[]"
    )


def service_of(ctr: dict[str, Any]) -> str:
    return ctr.get("Labels", {}).get("com.docker.compose.service", "")


def wait_healthy(run: Run, timeout: float = 240) -> list[str]:
    """Run each container's healthcheck (podman has no timer for it without systemd) until all pass."""
    deadline = time.monotonic() + timeout
    while True:
        pending: dict[str, str] = {}
        ctrs = [c for c in containers(run) if service_of(c) != "load-demo"]
        for ctr in ctrs:
            name = ctr["Names"][0]
            if ctr["State"] != "running":
                pending[name] = ctr["State"]
                continue
            res = run.podman("healthcheck", "run", name, check=False, quiet=True)
            if res.returncode != 0 and "has no defined healthcheck" not in res.stderr:
                pending[name] = (res.stdout + res.stderr).strip() or "unhealthy"
        if not pending and ctrs:
            return sorted(c["Names"][0] for c in ctrs)
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {n}\n{run.podman('logs', '--tail', '30', n, check=False, quiet=True).stderr}" for n in pending
            )
            raise CheckFailed(f"not healthy: {pending}\n{run.masked(logs)[-6000:]}")
        time.sleep(2)


# -- 6-7. jobs --------------------------------------------------------------------------------


def call(
    method: str, url: str, key: str | None = None, body: Any = None, auth: str | None = None, **headers: str
) -> tuple[int, Any]:
    hdrs = {"Content-Type": "application/json", **headers}
    if key:
        hdrs["Authorization"] = f"Bearer {key}"
    if auth:
        hdrs["Authorization"] = auth
    req = urllib.request.Request(
        url, method=method, headers=hdrs, data=json.dumps(body).encode() if body is not None else None
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode(errors="replace")
    except urllib.error.HTTPError as err:
        with err:
            raw = err.read()
            return err.code, json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode(errors="replace")


def run_job(api: str, key: str, *, fresh: bool = False, timeout: float = 240) -> dict[str, Any]:
    """Submit the check's job, wait for it, return its sessions answer."""
    extra = {"Cache-Control": "no-cache"} if fresh else {}
    status, job = call("POST", f"{api}/jobs", key, JOB, **extra)
    if status != 202:
        raise CheckFailed(f"POST /jobs answered {status}: {job}")
    deadline = time.monotonic() + timeout
    while job["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise CheckFailed(f"job not done in {timeout:.0f} s: {job}")
        time.sleep(0.5)
        job = call("GET", f"{api}/jobs/{job['id']}", key)[1]
    if job["status"] != "succeeded":
        raise CheckFailed(f"job {job['status']}: {job}")
    status, result = call("GET", f"{api}/jobs/{job['id']}/sessions", key)
    if status != 200 or not result.get("sessions"):
        raise CheckFailed(f"GET sessions answered {status}: {str(result)[:500]}")
    return result


def same_sessions(containers_result: dict[str, Any], host_result: dict[str, Any]) -> None:
    a, b = containers_result["sessions"], host_result["sessions"]
    if a != b:
        diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        raise CheckFailed(
            f"sessions differ ({len(a)} in containers, {len(b)} on the host); first at {diff}: "
            f"{a[diff] if diff < len(a) else None} != {b[diff] if diff < len(b) else None}"
        )
    counts = ("users", "sessions", "events", "invalid_events")
    sa = {k: containers_result["stats"].get(k) for k in counts}
    sb = {k: host_result["stats"].get(k) for k in counts}
    if sa != sb:
        raise CheckFailed(f"stats differ: containers {sa}, host {sb}")


def host_job(run: Run) -> dict[str, Any]:
    """The same job on the host-run stack (Redis, a worker and the API as processes, as `make up`
    runs them), reading the same events from the elasticsearch container's published port."""
    var = run.tmp / "host-var"
    stack = Stack()
    stack.env.update(
        {
            "SESSIONIZER_VAR_DIR": str(var),
            "EVENT_SOURCE": "elasticsearch",
            "ELASTICSEARCH_URL": f"http://127.0.0.1:{run.ports['ES']}",
            "ELASTICSEARCH_INDEX": "usage-events",
            "ELASTICSEARCH_API_KEY": run.dotenv["ELASTICSEARCH_API_KEY"],
            "AUTH_REQUIRED": "true",
            "API_KEYS": run.dotenv["API_KEYS"],
        }
    )
    stack.env.pop("REDIS_URL", None)
    try:
        stack.start_redis(var / "redis")
        (var / "logs").mkdir(parents=True)
        port = free_port()
        stack.spawn(worker_command(concurrency=2), log=var / "logs" / "worker.log")
        stack.spawn(api_command("127.0.0.1", port), log=var / "logs" / "api.log")
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        return run_job(f"http://127.0.0.1:{port}", run.client_key)
    finally:
        stack.stop()


# -- 8. Prometheus and Flower -----------------------------------------------------------------


def wait_scraped(run: Run, workers: int, timeout: float = 150) -> dict[str, int]:
    """Prometheus has the API and ``workers`` worker targets, all up, and has read the API's job
    counter (dns_sd refreshes every 30 s and scrapes every 15 s: config/prometheus.yml)."""
    prom = f"http://127.0.0.1:{run.ports['PROMETHEUS']}"
    deadline = time.monotonic() + timeout
    while True:
        _, targets = call("GET", f"{prom}/api/v1/targets")
        up: dict[str, int] = {}
        for t in targets.get("data", {}).get("activeTargets", []) if isinstance(targets, dict) else []:
            if t["health"] == "up":
                up[t["labels"]["job"]] = up.get(t["labels"]["job"], 0) + 1
        _, query = call("GET", f"{prom}/api/v1/query?query=sum(sessionizer_jobs_submitted_total)")
        result = query.get("data", {}).get("result", []) if isinstance(query, dict) else []
        submitted = float(result[0]["value"][1]) if result else 0.0
        if up.get("sessionizer-api", 0) >= 1 and up.get("sessionizer-worker", 0) == workers and submitted >= 1:
            return up
        if time.monotonic() > deadline:
            raise CheckFailed(f"Prometheus: targets up {up}, jobs submitted {submitted} (want {workers} workers)")
        time.sleep(3)


def check_flower(run: Run) -> None:
    flower = f"http://127.0.0.1:{run.ports['FLOWER']}/"
    user, password = run.dotenv["FLOWER_USER"], run.dotenv["FLOWER_PASSWORD"]
    basic = lambda u, p: "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode()  # noqa: E731
    for auth in (None, basic(user, "wrong-" + password)):
        status, _ = call("GET", flower, auth=auth)
        if status != 401:
            raise CheckFailed(f"Flower answered {status} without its password")
    status, _ = call("GET", flower, auth=basic(user, password))
    if status != 200:
        raise CheckFailed(f"Flower answered {status} with its password")


# -- 10. down ---------------------------------------------------------------------------------


def leftovers(run: Run) -> dict[str, list[str]]:
    found = {
        "containers": run.podman("ps", "-aq", "--filter", f"label={LABEL}", quiet=True).stdout.split(),
        "networks": run.podman("network", "ls", "-q", "--filter", f"label={LABEL}", quiet=True).stdout.split(),
        "volumes": run.podman("volume", "ls", "-q", "--filter", f"label={LABEL}", quiet=True).stdout.split(),
        "pods": run.podman("pod", "ps", "-q", "--filter", f"name=pod_{PROJECT}", quiet=True).stdout.split(),
    }
    return {k: v for k, v in found.items() if v}


def down(run: Run) -> None:
    run.compose("down", "--volumes", "--timeout", "20", check=False, timeout=300)
    left = leftovers(run)
    for ctr in left.get("containers", []):
        run.podman("rm", "--force", "--volumes", ctr, check=False, quiet=True)
    for pod in left.get("pods", []):
        run.podman("pod", "rm", "--force", pod, check=False, quiet=True)
    for net in left.get("networks", []):
        run.podman("network", "rm", "--force", net, check=False, quiet=True)
    for vol in left.get("volumes", []):
        run.podman("volume", "rm", "--force", vol, check=False, quiet=True)


# -- the whole check --------------------------------------------------------------------------


def new_run(tmp: Path) -> Run:
    key = secrets.token_urlsafe(24)
    dotenv = {
        "REDIS_PASSWORD": secrets.token_urlsafe(16),
        "FLOWER_USER": "admin",
        "FLOWER_PASSWORD": secrets.token_urlsafe(16),
        "API_KEYS": f"check:{digest(key)}",
        "ELASTICSEARCH_API_KEY": secrets.token_urlsafe(16),
    }
    (tmp / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    (tmp / ".env").chmod(0o600)
    (tmp / "containers.conf").write_text(CONTAINERS_CONF)
    # free loopback ports for what the stack publishes, so that it runs beside one already up
    services = {
        "API": ("api", 8000),
        "ES": ("elasticsearch", 9200),
        "FLOWER": ("flower", 5555),
        "PROMETHEUS": ("prometheus", 9090),
    }
    ports = {name: free_port() for name in services}
    (tmp / "ports.yml").write_text(
        "services:\n"
        + "".join(
            f'  {svc}:\n    ports: !override ["127.0.0.1:{ports[name]}:{cport}"]\n'
            for name, (svc, cport) in services.items()
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in dotenv}
    env.update({"CONTAINERS_CONF": str(tmp / "containers.conf"), "SESSIONIZER_PODMAN_CACHE": str(CACHE)})
    return Run(tmp, env, dotenv, key, ports)


def check(run: Run) -> dict[str, Any]:
    with run.step("bases", "python:3.11-slim, Redis and Prometheus stand-ins from Debian packages"):
        podman_compose_tool(run)
        run.sh(["bash", str(ROOT / "deploy" / "podman" / "base-images.sh")], timeout=1800)
    with run.step("image", f"{IMAGE} from the Dockerfile"):
        build_image(run)
        image = check_image(run)
    down(run)  # what an interrupted earlier check may have left
    api = f"http://127.0.0.1:{run.ports['API']}"
    try:
        with run.step("up", "podman-compose up (docker-compose.yml + docker-compose.podman.yml)"):
            run.compose("up", "-d", timeout=600)
        with run.step("healthy", "every container's healthcheck"):
            print("  " + ", ".join(wait_healthy(run)), flush=True)
        with run.step("load", "the load-demo service loads the demo events"):
            run.compose("--profile", "load", "run", "--rm", "load-demo", timeout=600)
            status, count = call(
                "GET",
                f"http://127.0.0.1:{run.ports['ES']}/usage-events/_count",
                auth="ApiKey " + run.dotenv["ELASTICSEARCH_API_KEY"],
            )
            if status != 200 or count["count"] < 1000:
                raise CheckFailed(f"usage-events holds {count} after the load")
            print(f"  {count['count']} events in usage-events", flush=True)
        with run.step("job", "a job through the API container, from the host"):
            if call("GET", f"{api}/jobs")[0] != 401:
                raise CheckFailed("the API answered without a key")
            in_containers = run_job(api, run.client_key)
            print(f"  stats {json.dumps(in_containers['stats'])}", flush=True)
        with run.step("host", "the same job on the host-run stack: the same sessions"):
            same_sessions(in_containers, host_job(run))
            print(f"  {len(in_containers['sessions'])} sessions, identical", flush=True)
        with run.step("watch", "Prometheus scraped the API and the worker; Flower wants its password"):
            print(f"  targets up {wait_scraped(run, workers=1)}", flush=True)
            check_flower(run)
        with run.step("scale", "workers scaled to 2, a fresh job again"):
            run.compose("up", "-d", "--no-deps", "--scale", "worker=2", "worker", timeout=600)
            workers = [n for n in wait_healthy(run) if "worker" in n]
            if len(workers) != 2:
                raise CheckFailed(f"workers after scaling: {workers}")
            same_sessions(run_job(api, run.client_key, fresh=True), in_containers)
            print(f"  {', '.join(workers)} healthy; targets up {wait_scraped(run, workers=2)}", flush=True)
    finally:
        with run.step("down", "every container stopped by SIGTERM; all the project's things removed"):
            # dependents first, as Docker Compose stops them (podman-compose may stop Redis while
            # the workers are still handing their units back): the app, then what it stands on
            run.compose("stop", "--timeout", "30", "worker", "api", "flower", check=False, timeout=300)
            run.compose("stop", "--timeout", "30", check=False, timeout=300)
            # 137: still running at the end of the grace period, then killed
            killed = [c["Names"][0] for c in containers(run) if c.get("ExitCode") == 137]
            # what a container that had to be killed was doing: the end of its log, before `down` removes it
            tails = "\n".join(
                f"--- {n}\n{run.podman('logs', '--tail', '40', n, check=False, quiet=True).stderr}" for n in killed
            )
            down(run)
            if killed:
                raise CheckFailed(f"not stopped by SIGTERM within 30 s: {killed}\n{tails}")
            if left := leftovers(run):
                raise CheckFailed(f"left behind: {left}")
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    if shutil.which("podman") is None or shutil.which("mmdebstrap") is None:
        print(
            "compose-check needs podman, runc and mmdebstrap (apt-get install podman runc mmdebstrap)", file=sys.stderr
        )
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(CACHE / "check.lock", "w") as lock, tempfile.TemporaryDirectory(prefix="compose-check-") as tmp:
        # one check at a time on a machine: they share the project name, the image tag, the stand-ins
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("[compose-check] waiting for another compose-check on this machine", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        run = new_run(Path(tmp))
        try:
            image = check(run)
        except (CheckFailed, subprocess.TimeoutExpired, OSError) as exc:
            print(f"[compose-check] FAILED: {run.masked(str(exc))}", file=sys.stderr, flush=True)
            for log in ("build.log", "podman-compose.log"):
                if (run.tmp / log).exists():
                    print(f"--- end of {log}\n{run.masked((run.tmp / log).read_text())[-3000:]}", file=sys.stderr)
            return 1
    total = time.monotonic() - start
    times = ", ".join(f"{name} {took:.0f} s" for name, took in run.times)
    print(
        f"[compose-check] passed in {total:.0f} s ({times}); image {IMAGE} {image['size_mb']} MB, user {image['user']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
