"""HTTP plumbing: reading requests, framing answers, headers, dispatch to the router."""

from __future__ import annotations

import gzip
import re
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from .errors import EsError
from .faults import LoggedRequest, _Reset, _status_error
from .render import dumps
from .routes import _Router

if TYPE_CHECKING:
    from .server import EsProtocolServer


_JSON = "application/json"
_VND_JSON = "application/vnd.elasticsearch+json;compatible-with=8"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "esproto"
    disable_nagle_algorithm = True
    es: EsProtocolServer  # set on the bound subclass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.es._lock:
            self.es._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        with self.es._lock:
            self.es._conns.discard(self.connection)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    # -- plumbing
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
        elif "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(parts)
        else:
            body = b""
        if body and (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def _handle(self) -> None:
        es = self.es
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        entry = LoggedRequest(
            self.command,
            path,
            query,
            {k.lower(): v for k, v in self.headers.items()},
            body if len(body) <= es.log_body_limit else None,
        )
        es.log.append(entry)
        accept = self.headers.get("Accept") or ""
        ctype = _VND_JSON if "vnd.elasticsearch" in accept else _JSON
        status, headers, payload = 200, {}, b""
        try:
            payload, status = self._dispatch(entry, body)
        except _Reset:
            entry.status, entry.fault = 0, entry.fault or "reset"
            self._reset()
            return
        except EsError as exc:
            status, headers, payload = exc.status, exc.headers, dumps(exc.body())
        except Exception as exc:  # noqa: BLE001 - a bug in this server: answer 500 like ES would
            err = EsError(500, "exception", f"esproto internal error: {type(exc).__name__}: {exc}")
            status, payload = 500, dumps(err.body())
        entry.status = status
        self._send(status, payload, ctype, headers)

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True

    def _send(self, status: int, payload: bytes, ctype: str, headers: dict) -> None:
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('Unknown',))[0]}",
            "X-Elastic-Product: Elasticsearch",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(payload)}",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if self.command == "HEAD":
                self.wfile.write(head)
            else:
                self.wfile.write(head + payload if len(payload) < 65536 else head)
                if len(payload) >= 65536:
                    self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _check_headers(self) -> None:
        for name in ("Accept", "Content-Type"):
            value = self.headers.get(name) or ""
            m = re.search(r"compatible-with=(\d+)", value)
            if m and m[1] not in ("7", "8"):
                raise EsError(
                    400,
                    "media_type_header_exception",
                    f"Invalid media-type value on headers [{name}]",
                    root=[
                        {
                            "type": "media_type_header_exception",
                            "reason": f"Invalid media-type value on headers [{name}]",
                        }
                    ],
                    extra={
                        "caused_by": {
                            "type": "status_exception",
                            "reason": "A compatible version is required on both Content-Type "
                            "and Accept headers if either one has requested a "
                            "compatible version. Compatible versions: [7, 8]",
                        }
                    },
                )

    def _dispatch(self, entry: LoggedRequest, body: bytes) -> tuple[bytes, int]:
        es, faults = self.es, self.es.faults
        path, method = entry.path, entry.method
        if faults.delay_s and faults.delay_path in path:
            faults.count("delay")
            time.sleep(faults.delay_s)
        if faults.always_status is not None:
            entry.fault = f"always:{faults.always_status}"
            faults.count(entry.fault)
            if faults.always_status == "reset":
                raise _Reset()
            raise _status_error(int(faults.always_status))
        if not faults.authorized(self.headers.get("Authorization")):
            entry.fault = "auth"
            faults.count("auth")
            reason = (
                f"missing authentication credentials for REST request [{self.path}]"
                if not self.headers.get("Authorization")
                else "unable to authenticate user for REST request"
            )
            raise EsError(
                401,
                "security_exception",
                reason,
                root=[
                    {
                        "type": "security_exception",
                        "reason": reason,
                        "header": {"WWW-Authenticate": ['Basic realm="security" charset="UTF-8"', "ApiKey"]},
                    }
                ],
                extra={"header": {"WWW-Authenticate": ['Basic realm="security" charset="UTF-8"', "ApiKey"]}},
                headers={"WWW-Authenticate": 'Basic realm="security" charset="UTF-8"'},
            )
        if faults.forbidden:
            entry.fault = "forbidden"
            faults.count("forbidden")
            raise EsError(
                403,
                "security_exception",
                f"action [indices:data/read/search] is unauthorized for user [tester] with "
                f"effective roles [] on indices [{path.strip('/').split('/')[0]}]",
            )
        self._check_headers()
        parts = [p for p in path.split("/") if p]
        if parts and parts[-1] in ("_search", "scroll") or (len(parts) >= 2 and parts[-2:] == ["_search", "scroll"]):
            kind = faults.draw_search_failure()
            if kind is not None:
                entry.fault = str(kind)
                faults.count(str(kind))
                if kind == "reset":
                    raise _Reset()
                raise _status_error(int(kind))
        try:
            req = orjson.loads(body) if body and not path.endswith("_bulk") else None
        except orjson.JSONDecodeError as exc:
            raise EsError(
                400,
                "x_content_parse_exception",
                f"[1:1] failed to parse the request body: {exc}",
                root=[{"type": "x_content_parse_exception", "reason": "failed to parse the request body"}],
            ) from None
        return _Router(es, entry, req, body).route(method, parts)
