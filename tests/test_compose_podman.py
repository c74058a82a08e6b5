"""docker-compose.yml run in containers: `make compose-check` (deploy/podman/compose_check.py)
under podman, where podman, runc and mmdebstrap are installed (.ci/run installs them), and the
parts it is made of: the host's pip index handed to the build, and esproto as the elasticsearch
service."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from elasticsearch import AuthenticationException, Elasticsearch

from devstack import ROOT, free_port

sys.path.insert(0, str(ROOT / "deploy" / "podman"))
import compose_check

OVERRIDE = ROOT / "docker-compose.podman.yml"


def test_the_host_pip_index_goes_to_the_build_as_arguments_and_read_only_mounts(tmp_path: Path) -> None:
    (tmp_path / "mirror" / "simple").mkdir(parents=True)
    cert = tmp_path / "ca.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    opts = compose_check.build_options(
        {
            "index-url": "https://pypi.example/simple",
            "extra-index-url": f"file://{tmp_path}/mirror/simple file:///nowhere/simple",
            "cert": str(cert),
        }
    )
    assert opts[:2] == ["--build-arg", "PIP_INDEX_URL=https://pypi.example/simple"]
    assert f"PIP_EXTRA_INDEX_URL=file://{tmp_path}/mirror/simple file:///nowhere/simple" in opts
    mounts = [opts[i + 1] for i, o in enumerate(opts) if o == "-v"]
    # the local index's folder (its pages link to ../files/) and the CA bundle, read-only, for the build only
    assert mounts == [f"{tmp_path}/mirror:{tmp_path}/mirror:ro", f"{cert}:/etc/ssl/certs/ca-certificates.crt:ro"]
    assert compose_check.build_options({})[:2] == ["--build-arg", "PIP_INDEX_URL=https://pypi.org/simple"]
    with pytest.raises(compose_check.CheckFailed, match="credentials"):  # they would stay in the history
        compose_check.build_options({"index-url": "https://me:s3cret@pypi.example/simple"})


def test_the_host_pip_config_is_read_from_pip_itself(tmp_path: Path) -> None:
    """What pip reports: its configuration files, then PIP_* variables over them."""
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://a.example/simple\ncert = /etc/a.crt\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=str(conf), PIP_EXTRA_INDEX_URL="file:///mirror/simple")
    config = compose_check.host_pip_config(env)
    assert (config["index-url"], config["cert"]) == ("https://a.example/simple", "/etc/a.crt")
    assert config["extra-index-url"] == "file:///mirror/simple"
    assert (
        compose_check.host_pip_config({**env, "PIP_INDEX_URL": "https://b.example/simple"})["index-url"]
        == "https://b.example/simple"
    )


def test_the_override_publishes_on_loopback_only_and_serves_esproto() -> None:
    class Tagged(yaml.SafeLoader):
        """Compose's merge tags (``!override``, ``!reset``) read as the plain value they tag."""

    def untagged(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> object:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    Tagged.add_multi_constructor("!", untagged)
    override = yaml.load(OVERRIDE.read_text(), Loader=Tagged)["services"]
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = {name for name, svc in base.items() if svc.get("ports")}
    assert published <= set(override)  # every published port of the base is rebound
    for name in published:
        assert [p.split(":")[0] for p in override[name]["ports"]] == ["127.0.0.1"], name
    es = override["elasticsearch"]
    assert es["image"] == base["api"]["image"]  # the project's image, with esproto mounted
    mounted = {v.split(":")[0] for v in es["volumes"]}
    assert {"./esproto", "./deploy/podman/esproto_serve.py"} == mounted
    assert all((ROOT / m).exists() for m in mounted)
    assert "ELASTICSEARCH_API_KEY" in es["environment"]["ESPROTO_API_KEY"]


def test_esproto_serve_requires_the_api_key_and_stops_on_sigterm() -> None:
    """The elasticsearch service's program, on loopback here, with the official client."""
    port, key = free_port(), "c2VjcmV0LWtleQ=="
    env = {
        **os.environ,
        "ESPROTO_HOST": "127.0.0.1",
        "ESPROTO_PORT": str(port),
        "ESPROTO_API_KEY": key,
        "PYTHONPATH": str(ROOT),
    }
    with subprocess.Popen(
        [sys.executable, str(ROOT / "deploy" / "podman" / "esproto_serve.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and f"listening on port {port}" in proc.stdout.readline()
            url = f"http://127.0.0.1:{port}"
            with Elasticsearch(url) as anonymous, pytest.raises(AuthenticationException):
                anonymous.info()
            with Elasticsearch(url, api_key=key) as client:
                client.index(
                    index="usage-events",
                    document={"user": "romain", "@timestamp": "2022-09-05T10:00:00Z"},
                    refresh=True,
                )
                assert client.count(index="usage-events")["count"] == 1
            health = [sys.executable, str(ROOT / "deploy" / "podman" / "esproto_serve.py"), "health"]
            assert subprocess.run(health, env=env, capture_output=True).returncode == 0  # the healthcheck
            assert (
                subprocess.run(health, env={**env, "ESPROTO_API_KEY": "d3Jvbmc="}, capture_output=True).returncode != 0
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def _missing_tools() -> list[str]:
    return [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]


@pytest.mark.slow
def test_make_compose_check_runs_the_stack_in_containers(capsys: pytest.CaptureFixture[str]) -> None:
    """The whole check: base images, the image, the stack up and healthy, the demo loaded, a job
    matching the host stack's, Prometheus and Flower, two workers, and nothing left behind."""
    if missing := _missing_tools():
        pytest.skip(
            f"{', '.join(missing)} not installed (apt-get install podman runc mmdebstrap, as .ci/run "
            "does when root): the containers are not run"
        )
    if os.geteuid() != 0:
        pytest.skip("podman runs here as root only (rootless podman needs subordinate ids): not run")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "podman" / "compose_check.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    steps = [
        ln.split(":")[0].removeprefix("[compose-check] ")
        for ln in out.splitlines()
        if ln.endswith(" s") and ": ok in " in ln
    ]
    assert steps == ["bases", "image", "up", "healthy", "load", "job", "host", "watch", "scale", "down"], out
    with capsys.disabled():  # each step's time, in the test run's output
        print("\n" + "\n".join(ln for ln in out.splitlines() if ln.startswith("[compose-check] passed")))
