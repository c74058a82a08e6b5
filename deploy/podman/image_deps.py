"""Run inside the image: which pip-installed distributions the project does not need.

Prints JSON: every distribution pip installed (under /usr/local, not the base image's own), and
those outside the requirement closure of ``sessionizer`` (its dependencies, their dependencies,
with the extras asked for on the way). Runtime dependencies only means that list is empty.
"""

from __future__ import annotations

import importlib.metadata as md
import json

try:
    from packaging.requirements import Requirement
except ImportError:  # pip's own copy
    from pip._vendor.packaging.requirements import Requirement


def norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def closure(root: str) -> set[str]:
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        key = (norm(name), extras)
        if f"{key}" in seen:
            continue
        seen.add(f"{key}")
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((req.name, frozenset(req.extras)))
    return {s.split("'")[1] for s in seen}


installed = {norm(d.metadata["Name"]): str(d.locate_file("")) for d in md.distributions()}
pip_installed = sorted(n for n, where in installed.items() if where.startswith("/usr/local/"))
needed = closure("sessionizer")
print(json.dumps({"installed": pip_installed, "unneeded": sorted(set(pip_installed) - needed - {"sessionizer"})}))
