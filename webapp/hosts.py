"""The ``Host`` header checked against ``ALLOWED_HOSTS`` before anything else (DNS rebinding:
``sessionizer/hosts.py``). A host not answered is a 400 problem before routing, authentication
or a body, with or without API keys.

``/healthz``, ``/readyz`` and ``/metrics`` answer any host: probes and Prometheus reach the API by
address (a container's IP), and they hold nothing of any key's jobs.

No answer is built from ``Host``: routing never redirects (``merge_slashes`` off, and no route
ends with a slash for ``strict_slashes`` to redirect to), so ``/jobs//<id>`` is a 404, not a 308
to whatever host was sent.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import BadRequest

from sessionizer.hosts import allowed_hosts, host_allowed
from sessionizer.settings import Settings

from .auth import refuse_key_in_query

ANY_HOST = {"/healthz", "/readyz", "/metrics"}


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
