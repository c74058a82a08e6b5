"""gunicorn's gevent worker, answering the errors the HTTP server raises itself as problem+json.

gunicorn answers a request it cannot parse (a request line over ``limit_request_line``: 414; too
many or too large header fields: 431; a control character in a header, a bad request line or
chunk: 400) before the application sees it, with a small HTML page. This worker keeps gunicorn's
choice of status and its logging, and only rewrites what goes on the wire: an RFC 9457 body
whose ``detail`` is fixed per status, so no part of the offending request (which may hold a key)
is echoed back.

It also bounds request bodies before they reach the application: a chunk whose declared size
would take the body over ``MAX_BODY_BYTES`` is refused as soon as its size line is read (an
error with ``status = 413``, which ``webapp/bodylimit.py`` answers), instead of waiting for bytes
that would be refused anyway; and a body the application did not read (a route that takes none,
a request refused before its body was needed) is not waited for: the answer goes first, then
what is left of the body is read for at most 64 KiB and half a second (:func:`drain`), and the
connection is closed if it does not end by then.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.errors import ParseException
from gunicorn.workers.ggevent import GeventWorker

from sessionizer.settings import MAX_BODY_BYTES

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
    body = json.dumps(
        {
            "type": "about:blank",
            "title": reason,
            "status": status,
            "detail": DETAILS.get(status, "The server could not handle this request."),
        }
    ).encode()
    # a request id of its own, as every answer has one (the request was not read far enough to
    # take the client's)
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: {PROBLEM}\r\n"
        f"X-Request-ID: {uuid.uuid4().hex}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
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


class BodyTooLarge(ValueError):
    """A chunked body whose declared chunk sizes add up to more than the limit."""

    status = 413


class BoundedChunkedReader(ChunkedReader):
    """gunicorn's chunked reader, refusing a chunk size line that takes the body over ``limit``."""

    def __init__(self, req: Any, unreader: Any, limit: int) -> None:
        super().__init__(req, unreader)
        self.limit, self.declared, self.finished = limit, 0, False

    def parse_chunk_size(self, unreader: Any, data: Any = None) -> Any:
        size, rest = super().parse_chunk_size(unreader, data)
        self.declared += size
        if self.declared > self.limit:
            raise BodyTooLarge(f"chunks declare more than {self.limit} bytes")
        self.finished = size == 0
        return size, rest


DRAIN_MAX_BYTES = 64 * 1024  # what is read of an unread body after the answer, at most...
DRAIN_S = 0.5  # ...and for at most this long, before the connection is closed instead


def drain(req: Any, sock: Any) -> bool:
    """Read (and drop) what is left of a body the application did not read, within
    ``DRAIN_MAX_BYTES`` and ``DRAIN_S``; ``True`` when it all came, so the connection can serve its
    next request. Bytes already received are read either way: closing a socket with unread data
    makes the kernel reset the connection, which can destroy the answer just sent."""
    deadline = time.monotonic() + DRAIN_S
    got = 0
    try:
        prior = sock.gettimeout()
    except OSError:
        return False
    try:
        while got < DRAIN_MAX_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            data = req.body.read(8192)
            if not data:
                return True
            got += len(data)
        return False
    # a timeout or a cut connection (OSError), a chunk over the limit (BodyTooLarge), a malformed chunk
    except (OSError, ValueError, ParseException):
        return False
    finally:
        try:
            sock.settimeout(prior)
        except OSError:
            pass


def body_left(req: Any) -> bool:
    """Has the request's body bytes the application did not read (and the server would wait for)?"""
    reader = getattr(getattr(req, "body", None), "reader", None)
    if isinstance(reader, LengthReader):
        return reader.length > 0
    if isinstance(reader, BoundedChunkedReader):
        return not reader.finished
    return False


class ProblemGeventWorker(GeventWorker):
    """gevent worker (one greenlet per connection) whose own error answers are problem+json and
    whose request bodies are bounded (see above)."""

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        body = getattr(req, "body", None)
        if body is not None and isinstance(body.reader, ChunkedReader):
            req.body = Body(BoundedChunkedReader(req, req.unreader, MAX_BODY_BYTES))
        super().handle_request(listener_name, req, sock, addr)
        if body_left(req) and not drain(req, sock):
            raise StopIteration()  # gunicorn's way to close the connection after the answer

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        super().handle_error(req, _ProblemWriter(client), addr, exc)
