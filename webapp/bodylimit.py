"""Request bodies without a declared length are counted as the application reads them, and
refused past the size limit (413); a body is never read before the application asks for it.

Werkzeug refuses a ``Content-Length`` over ``MAX_CONTENT_LENGTH`` itself, but a chunked body
(``Transfer-Encoding: chunked``, no ``Content-Length``) is only truncated at the limit, and the
truncated JSON was then reported as malformed (400). This WSGI middleware wraps such a body in a
stream that counts what is read: one byte past the limit is a 413, and a body the server cannot
decode (a malformed chunk, or a chunk whose declared size is over the limit: ``serving/worker.py``)
a 400 or a 413. Both are raised as HTTP errors inside the application, so they are answered like
every other error (problem+json, ``X-Request-ID``), and only when a view reads the body: after
the key has been checked and the failed-key limit applied (``webapp/jobs/views.py``), and never
on routes that take no body. A declared ``Content-Length`` over the limit is refused before
anything else (:func:`refuse_declared_oversize`): nothing of it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, current_app, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BoundedInput:
    """A chunked ``wsgi.input`` read at most ``limit`` bytes far; errors become HTTP errors."""

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream, self.limit, self.seen = stream, limit, 0

    def _call(self, read: Callable[..., bytes], *args: Any) -> bytes:
        try:
            return read(*args)
        # the server's own decoding error (malformed chunk, cut connection), whose types depend on
        # the WSGI server: any of them is a bad body (4xx), never a 500
        except Exception as exc:  # noqa: BLE001 - the server's error types are not ours to list
            if getattr(exc, "status", None) == 413:  # a chunk declared over the limit (serving/worker.py)
                raise RequestEntityTooLarge(f"The body is over {self.limit} bytes.") from None
            raise BadRequest("The chunked request body could not be read.") from None

    def _count(self, data: bytes) -> bytes:
        self.seen += len(data)
        # at the limit, one more byte tells a body of exactly the limit from a longer one
        if self.seen > self.limit or (self.seen == self.limit and data and self._call(self.stream.read, 1)):
            raise RequestEntityTooLarge(f"The body is over {self.limit} bytes.")
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self.limit + 1 - self.seen
        return self._count(self._call(self.stream.read, min(size, self.limit + 1 - self.seen)))

    def readline(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self.limit + 1 - self.seen
        return self._count(self._call(self.stream.readline, min(size, self.limit + 1 - self.seen)))


class BoundedBody:
    """Wrap a WSGI app so that no body of unknown length reaches it unbounded."""

    def __init__(self, app: WSGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("CONTENT_LENGTH") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            environ["wsgi.input"] = BoundedInput(environ["wsgi.input"], self.limit)
        return self.app(environ, start_response)


def register_body_limit(app: Flask) -> None:
    """413 at once for a declared body over the limit, before authentication (nothing is read),
    and chunked bodies counted as they are read."""

    @app.before_request
    def refuse_declared_oversize() -> None:
        if request.content_length is not None and request.content_length > current_app.config["MAX_CONTENT_LENGTH"]:
            raise RequestEntityTooLarge(f"The body is over {current_app.config['MAX_CONTENT_LENGTH']} bytes.")

    app.wsgi_app = BoundedBody(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
