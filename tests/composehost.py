"""docker-compose.yml, run on the host: no Docker engine runs here, so a test plays the engine's part.

What the engine would do, and what stands in for it:

* variable interpolation from ``.env`` (``$$``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``,
  ...), as the Compose specification defines it: :func:`interpolate`;
* each container's own environment: the service's ``environment`` only, plus what the image and
  Docker set (``PATH``, ``HOSTNAME``, the Dockerfile's ``ENV``), never the test runner's;
* the project network's DNS: a service name resolves to its container. Here every service listens
  on 127.0.0.1 on a free port, and ``name:port`` in environment values (URLs), ``0.0.0.0`` and
  ``localhost:port`` in commands and healthchecks are rewritten to that address (no /etc/hosts);
* the image's ``WORKDIR /app``: a temporary folder (the code itself is the editable install).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack import ROOT, free_port, redis_server_binary

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")

# Ports the replaced images listen on without saying so in the file.
IMAGE_PORTS = {"redis": 6379, "elasticsearch": 9200}


class MissingVariable(ValueError):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """One string, interpolated as Compose does (a missing ``${VAR:?msg}`` raises with ``msg``)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        val = env.get(name)
        empty = not val
        if op in (":-", "-"):
            return arg if (val is None or (op == ":-" and empty)) else val
        if op in (":?", "?"):
            if val is None or (op == ":?" and empty):
                raise MissingVariable(f"{name}: {arg}")
            return val
        if op in (":+", "+"):
            return arg if (val is not None and (op == "+" or not empty)) else ""
        return val or ""

    return _VAR.sub(sub, value)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def read_dotenv(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def load_compose(path: Path, dotenv: Mapping[str, str]) -> dict[str, Any]:
    """The file as the engine sees it: YAML merge keys applied, variables interpolated."""
    return interpolate_tree(yaml.safe_load(path.read_text()), dotenv)


def container_ports(name: str, service: Mapping[str, Any]) -> list[int]:
    """Ports a service's container listens on: the container side of ``ports``, ``expose``."""
    ports = [int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])]
    ports += [int(str(p).split("/")[0]) for p in service.get("expose", [])]
    if name in IMAGE_PORTS:
        ports.append(IMAGE_PORTS[name])
    return sorted(set(ports))


@dataclass
class HostNetwork:
    """Every (service, container port) gets a free loopback port."""

    ports: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def for_services(cls, services: Mapping[str, Any]) -> HostNetwork:
        return cls({(name, p): free_port() for name, svc in services.items() for p in container_ports(name, svc)})

    def url_value(self, value: str) -> str:
        """``redis://:pw@redis:6379/0`` -> ``redis://:pw@127.0.0.1:<port>/0``: what DNS would resolve."""
        for (name, cport), hport in self.ports.items():
            value = re.sub(rf"(?<=[/@]){re.escape(name)}:{cport}(?!\d)", f"127.0.0.1:{hport}", value)
        return value

    def own(self, service: str, text: str) -> str:
        """A service's own command or healthcheck: it binds and probes its own ports on loopback."""
        text = text.replace("0.0.0.0", "127.0.0.1").replace("localhost", "127.0.0.1")
        for (name, cport), hport in self.ports.items():
            if name == service:
                text = re.sub(rf"(?<!\d){cport}(?!\d)", str(hport), text)
        return text

    def port(self, service: str, cport: int) -> int:
        return self.ports[(service, cport)]


def container_env(service: Mapping[str, Any], name: str, net: HostNetwork) -> dict[str, str]:
    """What the process sees in its container: the service's environment, PATH, HOSTNAME, the image's ENV."""
    bin_dirs = [str(Path(sys.executable).parent), str(Path(redis_server_binary()).parent)]
    env = {
        "PATH": os.pathsep.join(bin_dirs + ["/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "HOSTNAME": socket.gethostname(),  # Docker sets it to the container's host name
        "PYTHONUNBUFFERED": "1",  # the Dockerfile's ENV
    }
    own_ports = {str(c): str(h) for (n, c), h in net.ports.items() if n == name}
    for key, value in (service.get("environment") or {}).items():
        value = "" if value is None else str(value)
        env[key] = own_ports.get(value, net.url_value(value))  # a port setting follows the port
    if "PYTHONPATH" in env:  # a folder of the checkout mounted for the import path: the checkout's own
        env["PYTHONPATH"] = os.pathsep.join(mounted_paths(service).get(p, p) for p in env["PYTHONPATH"].split(":"))
    return env


def mounted_paths(service: Mapping[str, Any]) -> dict[str, str]:
    """Container folders holding a bind mount of the checkout (``./devstack:/opt/tools/devstack``),
    and the host folder holding the same name (``/opt/tools`` -> the checkout)."""
    out = {}
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        target = rest.split(":")[0]
        if source.startswith("./") and Path(source).name == Path(target).name:
            out[str(Path(target).parent)] = str((ROOT / source).parent)
    return out


def argv(command: Any) -> list[str]:
    return list(command) if isinstance(command, list) else shlex.split(command)


def healthcheck_argv(test: Any) -> list[str]:
    """A healthcheck's ``test`` as a command line (``CMD`` runs as is, ``CMD-SHELL`` through sh)."""
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *rest = test
    if kind == "CMD-SHELL":
        return ["sh", "-c", rest[0]]
    assert kind == "CMD", f"unsupported healthcheck {test}"
    return rest


def run_healthcheck(
    name: str, service: Mapping[str, Any], env: Mapping[str, str], net: HostNetwork, cwd: Path, timeout: float = 30.0
) -> subprocess.CompletedProcess:
    args = [net.own(name, a) for a in healthcheck_argv(service["healthcheck"]["test"])]
    if name == "redis":  # redis-cli without -h/-p means the container's own 6379
        args = [a.replace("redis-cli ", f"redis-cli -p {net.port('redis', 6379)} ") for a in args]
    return subprocess.run(args, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout)
