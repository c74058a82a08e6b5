"""gunicorn's gevent worker, answering the errors the HTTP server raises itself as problem+json.

gunicorn answers a request it cannot parse (a request line over ``limit_request_line``: 414; too
many or too large header fields: 431; a control character in a header, a bad request line or
chunk: 400) before the application sees it, with a small HTML page. This worker keeps gunicorn's
choice of status and its logging, and only rewrites what goes on the wire: an RFC 9457 body
whose ``detail`` is fixed per status, so no part of the offending request (which may hold a key)
is echoed back.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn.workers.ggevent import GeventWorker

PROBLEM = "application/problem+json"
DETAILS = {
    400: "The request is not valid HTTP/1.1: a malformed request line, header name or value "
         "(control characters are not allowed), or chunk.",
    403: "The request was refused by the server.",
    414: "The request line (method, path and query) is too long.",
    417: "Only `Expect: 100-continue` is supported.",
    431: "Too many request header fields, or one too large.",
    501: "This transfer coding is not supported (chunked only).",
}


def problem_response(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 answer (closing the connection) with a problem+json body."""
    body = json.dumps({
        "type": "about:blank", "title": reason, "status": status,
        "detail": DETAILS.get(status, "The server could not handle this request."),
    }).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: {PROBLEM}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class _ProblemWriter:
    """The client socket as gunicorn's error path sees it: the HTML error page it writes is
    replaced by the same status as problem+json; everything else goes to the real socket."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def sendall(self, data: bytes, *args: Any) -> None:
        status_line = bytes(data).split(b"\r\n", 1)[0].decode("latin-1")
        _, code, reason = (status_line.split(" ", 2) + ["", ""])[:3]
        if code.isdigit():
            data = problem_response(int(code), reason)
        self._sock.sendall(data, *args)


class ProblemGeventWorker(GeventWorker):
    """gevent worker (one greenlet per connection) whose own error answers are problem+json."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        super().handle_error(req, _ProblemWriter(client), addr, exc)
