"""Has the client of this request closed its connection? Asked by long waits, so that a client
that gave up stops holding its wait (and its key's wait slot) at once rather than for up to
``MAX_WAIT_S``."""

from __future__ import annotations

import select
import socket

from flask import request


def client_gone() -> bool:
    """True once the peer has closed or reset the connection; False while it is open or where
    the server does not expose its socket (gunicorn does, as ``gunicorn.socket``)."""
    sock: socket.socket | None = request.environ.get("gunicorn.socket")
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)  # never blocks (cooperative under gevent)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""  # readable and empty: the peer has closed
    except (OSError, ValueError):  # reset, or the socket is already closed
        return True
