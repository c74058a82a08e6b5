"""Which ``Host`` headers the API and Flower answer (``ALLOWED_HOSTS``): DNS rebinding.

A web page on another site can make a browser send requests to ``127.0.0.1:8000`` (or Flower's
``:5555``) through a name it controls: the browser then believes the service is that site and
lets the page read the answers. Such requests carry the page's host name in ``Host``, so the
services answer only the names they are reached by: ``ALLOWED_HOSTS`` when set (comma-separated;
``*`` for any, ``.example.com`` for it and its subdomains), else the loopback names and ``HOST``.
Standard library only: the API (``webapp/hosts.py``) and Flower (``worker/flower.py``) use it.
"""

from __future__ import annotations

from .settings import Settings

LOOPBACK = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = {"", "0.0.0.0", "::"}


def allowed_hosts(settings: Settings) -> tuple[str, ...]:
    """The names answered: ``ALLOWED_HOSTS``, else the loopback names and ``HOST``."""
    configured = [h.strip().lower().strip("[]") for h in settings.auth.allowed_hosts.split(",") if h.strip()]
    if configured:
        return tuple(configured)
    host = settings.stack.host.strip().lower().strip("[]")
    return LOOPBACK + ((host,) if host not in WILDCARD_BINDS and host not in LOOPBACK else ())


def host_name(header: str) -> str:
    """``Example.COM:8000`` -> ``example.com``; ``[::1]:8000`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(header: str, allowed: tuple[str, ...]) -> bool:
    """Does the ``Host`` header name one of ``allowed``?"""
    name = host_name(header)
    for pattern in allowed:
        if (
            pattern == "*"
            or name == pattern
            or (pattern.startswith(".") and (name.endswith(pattern) or name == pattern[1:]))
        ):
            return True
    return False
