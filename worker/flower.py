"""Flower for Sessionizer: ``python -m worker.flower [flower options]``.

Celery's ``flower`` command on the project's Celery app, with two guards Flower lacks:

- it refuses to start without a login (``--basic-auth``/``--auth`` or ``FLOWER_BASIC_AUTH``, which
  Flower reads itself): Flower shows every key's job ids and user names;
- it answers only the host names of ``ALLOWED_HOSTS`` (``sessionizer/hosts.py``; by default the
  loopback names and ``HOST``): a page on another site reaching it by DNS rebinding gets a 400.
"""

from __future__ import annotations

import sys
from typing import Any

from sessionizer.hosts import allowed_hosts, host_allowed
from sessionizer.settings import get_settings

LOGIN_OPTIONS = ("--basic-auth", "--auth", "--basic_auth")


def has_login(argv: list[str]) -> bool:
    return any(a.startswith(LOGIN_OPTIONS) for a in argv) or get_settings().stack.flower_basic_auth is not None


def guard_hosts(allowed: tuple[str, ...]) -> None:
    """Every request Flower routes (pages, API, websockets, static files) checks ``Host`` first."""
    from flower.app import Flower
    from tornado.web import ErrorHandler

    find_handler = Flower.find_handler

    def checked(self: Any, request: Any, **kwargs: Any) -> Any:
        if not host_allowed(request.host or "", allowed):
            return self.get_handler_delegate(request, ErrorHandler, {"status_code": 400})
        return find_handler(self, request, **kwargs)

    Flower.find_handler = checked


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not has_login(argv):
        print("worker.flower: Flower needs a login: --basic-auth=USER:PASSWORD or FLOWER_BASIC_AUTH", file=sys.stderr)
        return 2
    guard_hosts(allowed_hosts(get_settings()))
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", "-A", "worker.celery_app", "flower", *argv]
    return celery_main() or 0


if __name__ == "__main__":
    sys.exit(main())
