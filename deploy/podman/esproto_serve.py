"""The project's Elasticsearch protocol server (esproto) as the ``elasticsearch`` service of
docker-compose.podman.yml, where Elasticsearch's own image cannot be had.

Run in the project's image with the checkout's ``esproto/`` mounted beside this file (the image
leaves it out: it is a test tool). It listens on every interface of its container on port 9200
(``ESPROTO_HOST``, ``ESPROTO_PORT``), and, when ``ESPROTO_API_KEY`` is set, refuses requests
without that API key, as a secured Elasticsearch would. It stops on SIGTERM.
``esproto_serve.py health`` is the service's healthcheck: the root answers, given the key.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import urllib.request
from http.server import ThreadingHTTPServer

import esproto.server
from esproto import EsProtocolServer


class _OnHost(ThreadingHTTPServer):
    """esproto binds 127.0.0.1 (it serves tests on the host); in a container the other services
    reach it through the container's network interface."""

    def __init__(self, address: tuple[str, int], handler: type) -> None:
        super().__init__((os.environ.get("ESPROTO_HOST", "0.0.0.0"), address[1]), handler)


def health() -> int:
    key = os.environ.get("ESPROTO_API_KEY")
    req = urllib.request.Request(
        f"http://127.0.0.1:{os.environ.get('ESPROTO_PORT', '9200')}/",
        headers={"Authorization": f"ApiKey {key}"} if key else {},
    )
    with urllib.request.urlopen(req, timeout=3):  # an error status raises: the check fails
        return 0


def main() -> None:
    esproto.server.ThreadingHTTPServer = _OnHost  # type: ignore[misc]
    server = EsProtocolServer(port=int(os.environ.get("ESPROTO_PORT", "9200")))
    if os.environ.get("ESPROTO_API_KEY"):
        server.faults.require_auth(api_key=os.environ["ESPROTO_API_KEY"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"esproto {server.version} listening on port {server.port}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["health"]:
        sys.exit(health())
    main()
