"""The ``sessionizer`` command's usage errors, ``--version``, and the answers of a server that is not
the API (an HTML error page, as a proxy gives): through subprocesses, against real loopback sockets.

Every usage error is refused before any request: the command points at a listening socket that
records connections, and none must arrive.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionizer_client import __version__

SESSIONIZER = str(Path(sys.executable).parent / "sessionizer")  # the installed console script
SUBMIT = ["submit", "--start", "2022-09-05", "--end", "2022-09-06"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONIZER_")}
    return subprocess.run([SESSIONIZER, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def listener() -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback socket that accepts and records connections (and answers nothing)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}", accepted
    server.close()
    for conn in accepted:
        conn.close()


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"sessionizer {__version__}"


def test_usage_errors_are_one_line_exit_2_before_any_request(listener, tmp_path: Path) -> None:
    address, accepted = listener
    cases = [
        ([*SUBMIT, "--users", f"@{tmp_path / 'missing.txt'}"], "missing.txt"),
        ([*SUBMIT, "--users", " , "], "no user"),
        ([*SUBMIT, "--users", "a", "--wait", "--format", "parquet"], "parquet needs -o"),
        ([*SUBMIT, "--users", "a", "--wait", "-o", str(tmp_path / "nowhere" / "s.csv")], "no such directory"),
        ([*SUBMIT, "--users", "a", "--wait", "-o", str(tmp_path)], "is a directory"),
        ([*SUBMIT, "--users", "a", "--format", "csv"], "--wait"),
        (["sessions", "x", "--format", "parquet"], "parquet needs -o"),
        (["submit", "--users", "a"], "--start"),
    ]
    for args, said in cases:
        out = run(*args, "--url", address)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
        assert said in out.stderr and "Traceback" not in out.stderr and ".part" not in out.stderr, (args, out.stderr)
    assert accepted == []  # nothing was submitted, nor even asked


class HTMLErrors(http.server.BaseHTTPRequestHandler):
    """What a proxy in front of the API may answer: an HTML page, with a script and a style."""

    def do_GET(self) -> None:
        status = 502 if "/jobs/gateway" in self.path else 404
        page = (
            f"<!doctype html><html><head><title>{status} {self.responses[status][0]}</title>"
            "<style>body { color: red }</style><script>var x = 1;</script></head>"
            f"<body><h1>{self.responses[status][0]}</h1><p>nginx/1.25</p></body></html>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def html_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HTMLErrors)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"  # no scheme: http:// is assumed
    server.shutdown()
    server.server_close()


def test_an_html_error_page_is_summarised_and_a_url_without_scheme_is_http(html_server: str) -> None:
    missing = run("status", "nope", "--url", html_server, "--retries", "0")
    assert missing.returncode == 2, missing.stderr  # reached (http:// assumed), and a 404
    assert missing.stderr.strip() == "error: 404 Not Found: 404 Not Found (Not Found nginx/1.25)", missing.stderr
    gateway = run("status", "gateway", "--url", html_server, "--retries", "0")
    assert gateway.returncode == 3, gateway.stderr
    assert "502 Bad Gateway" in gateway.stderr and "<" not in gateway.stderr and "var x" not in gateway.stderr
    assert "color" not in gateway.stderr and len(gateway.stderr.strip().splitlines()) == 1
