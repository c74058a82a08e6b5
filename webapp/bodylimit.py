"""Request bodies without a declared length are counted and cut at the size limit (413).

Werkzeug refuses a ``Content-Length`` over ``MAX_CONTENT_LENGTH`` itself, but a chunked body
(``Transfer-Encoding: chunked``, no ``Content-Length``) is only truncated at the limit, and the
truncated JSON was then reported as malformed (400). This WSGI middleware reads such a body up to
one byte past the limit before the application sees it: over the limit is a 413, a body the
server cannot decode (a malformed chunk) a 400, and otherwise the application gets the body with
its length, as if the client had declared it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from .errors import problem

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
READ_SIZE = 64 * 1024


class BoundedBody:
    """Wrap a WSGI app so that no body of unknown length reaches it unbounded."""

    def __init__(self, app: WSGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self.app(environ, start_response)
        try:
            body = self._read(environ["wsgi.input"])
        except Exception:  # the server's own decoding error (malformed chunk size, cut connection)
            answer = problem(400, "Bad Request", "The chunked request body could not be read.")
            return answer(environ, start_response)
        if body is None:
            answer = problem(413, "Request Entity Too Large", f"The body is over {self.limit} bytes.")
            return answer(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)

    def _read(self, stream: Any) -> bytes | None:
        """The whole body, or ``None`` as soon as it is known to be over the limit."""
        buf = bytearray()
        while True:
            chunk = stream.read(min(READ_SIZE, self.limit + 1 - len(buf)))
            if not chunk:
                return bytes(buf)
            buf += chunk
            if len(buf) > self.limit:
                return None
