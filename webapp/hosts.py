"""The ``Host`` header checked against ``ALLOWED_HOSTS`` before anything else (DNS rebinding).

A web page on another site can make a browser send requests to ``127.0.0.1:8000`` through a name
it controls (DNS rebinding): the browser then believes the API is that site and lets the page read
the answers. Such requests carry the page's host name in ``Host``; the API answers only the names
it is reached by: by default the loopback names and the configured ``HOST``, or the list in
``ALLOWED_HOSTS`` (``*`` for any; ``.example.com`` for it and its subdomains). Anything else is a
400 problem before routing, authentication or a body.

``/healthz``, ``/readyz`` and ``/metrics`` answer any host: probes and Prometheus reach the API by
address (a container's IP), and they hold nothing of any key's jobs.

No answer is built from ``Host``: routing never redirects (``merge_slashes`` off, and no route
ends with a slash for ``strict_slashes`` to redirect to), so ``/jobs//<id>`` is a 404, not a 308
to whatever host was sent.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import BadRequest

from sessionizer.settings import Settings

from .auth import refuse_key_in_query

LOOPBACK = ("localhost", "127.0.0.1", "::1")
ANY_HOST = {"/healthz", "/readyz", "/metrics"}
WILDCARD_BINDS = {"", "0.0.0.0", "::", "[::]"}


def allowed_hosts(settings: Settings) -> tuple[str, ...]:
    """The names the API answers: ``ALLOWED_HOSTS``, else the loopback names and ``HOST``."""
    configured = [h.strip().lower().strip("[]") for h in settings.auth.allowed_hosts.split(",") if h.strip()]
    if configured:
        return tuple(configured)
    host = settings.stack.host.strip().lower().strip("[]")
    return LOOPBACK + ((host,) if host not in WILDCARD_BINDS and host not in LOOPBACK else ())


def host_name(header: str) -> str:
    """``Example.COM:8000`` -> ``example.com``; ``[::1]:8000`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(header: str, allowed: tuple[str, ...]) -> bool:
    name = host_name(header)
    for pattern in allowed:
        if pattern == "*" or name == pattern or (pattern.startswith(".") and (name.endswith(pattern) or name == pattern[1:])):
            return True
    return False


def register_allowed_hosts(app: Flask, settings: Settings) -> None:
    allowed = allowed_hosts(settings)
    app.url_map.merge_slashes = False
    for rule in app.url_map.iter_rules():  # Flask's own static route, added before this
        rule.merge_slashes = False

    @app.before_request
    def check_host() -> None:
        if request.path in ANY_HOST:
            return
        if not host_allowed(request.environ.get("HTTP_HOST") or request.environ.get("SERVER_NAME", ""), allowed):
            raise BadRequest("This server does not answer for the host named in the request (ALLOWED_HOSTS).")

    app.before_request(refuse_key_in_query)  # next: a key in a URL is refused whatever the headers say
