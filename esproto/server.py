"""The server object: lifecycle, direct data access, clock and PIT/scroll contexts."""

from __future__ import annotations

import base64
import itertools
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from http.server import ThreadingHTTPServer
from typing import Any

import numpy as np
import orjson

from .contexts import _Pit, _Scroll
from .dates import _MAX_KEEP_ALIVE_S, parse_time_value
from .errors import EsError, _bad_request, _index_not_found
from .faults import Faults, LoggedRequest
from .handler import _Handler
from .index import _Index


class EsProtocolServer:
    """A threaded HTTP server on 127.0.0.1 speaking the Elasticsearch REST protocol.

    ``cache_pages=True`` keeps every rendered search page (keyed by snapshot, request and
    position) so that repeated scans are answered from memory: benchmarks use it to take the
    server's rendering cost out of client-side measurements.
    """

    version = "8.15.0"

    def __init__(
        self,
        *,
        port: int = 0,
        cache_pages: bool = False,
        log_limit: int = 10_000,
        log_body_limit: int = 1 << 20,
        empty_filter_path_drops_pit_id: bool = True,
    ) -> None:
        self.faults = Faults()
        self.log: deque[LoggedRequest] = deque(maxlen=log_limit)
        self.log_body_limit = log_body_limit
        self.cache_pages = cache_pages
        self.empty_filter_path_drops_pit_id = empty_filter_path_drops_pit_id
        self._indices: dict[str, _Index] = {}
        self._lock = threading.RLock()
        self._pits: dict[int, _Pit] = {}
        self._scrolls: dict[int, _Scroll] = {}
        self._ctx_counter = itertools.count(1)
        self._page_cache: dict[Any, bytes] = {}
        self.pits_opened = 0
        self.pits_closed = 0
        self.stale_pit_searches = 0  # PIT searches that did not send the newest pit_id back
        self.hits_sent = 0  # documents (hits) in search answers, PIT, plain and scroll pages
        self.searches_with_aggs = 0  # search answers that carried aggregations
        self.time_offset_s = 0.0
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.handler_errors: list[str] = []

    # -- lifecycle
    def start(self) -> EsProtocolServer:
        server = self
        handler = type("_BoundHandler", (_Handler,), {"es": server})
        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        httpd.handle_error = self._handle_error  # type: ignore[method-assign]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="esproto", daemon=True
        )
        self._thread.start()
        return self

    def _handle_error(self, request: Any, client_address: Any) -> None:
        # a connection-level failure (the client went away) or a bug here: keep it for tests
        import traceback

        self.handler_errors.append(traceback.format_exc())

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = None

    def __enter__(self) -> EsProtocolServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- counters (tests and benchmarks read them; reset_counters() zeroes them)
    def count_sent(self, hits: int, aggs: bool = False) -> None:
        with self._lock:
            self.hits_sent += hits
            self.searches_with_aggs += aggs

    def reset_counters(self) -> None:
        """Zero ``hits_sent``, ``searches_with_aggs``, ``pits_opened``, ``pits_closed`` and
        ``stale_pit_searches`` (``faults.injected`` has its own ``clear()``)."""
        with self._lock:
            self.hits_sent = self.searches_with_aggs = 0
            self.pits_opened = self.pits_closed = self.stale_pit_searches = 0

    # -- clock (tests may move it forward to expire contexts)
    def now(self) -> float:
        return time.monotonic() + self.time_offset_s

    def advance_time(self, seconds: float) -> None:
        self.time_offset_s += seconds

    # -- direct data access (no HTTP)
    def create_index(
        self, name: str, mappings: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> None:
        with self._lock:
            if name in self._indices:
                raise EsError(
                    400,
                    "resource_already_exists_exception",
                    f"index [{name}/{self._indices[name].uuid}] already exists",
                    extra={"index": name},
                )
            self._indices[name] = _Index(name, mappings, settings)

    def index(self, name: str) -> _Index:
        with self._lock:
            idx = self._indices.get(name)
        if idx is None:
            raise _index_not_found(name)
        return idx

    def has_index(self, name: str) -> bool:
        return name in self._indices

    def add_documents(
        self, name: str, documents: Iterable[Mapping[str, Any] | bytes], ids: Iterable[str] | None = None
    ) -> int:
        """Index documents (dicts, or their JSON bytes) directly; creates the index if missing.

        Raises :class:`EsError` on the first refused document. Returns how many were added.
        """
        with self._lock:
            if name not in self._indices:
                self._indices[name] = _Index(name)
            idx = self._indices[name]
        id_iter = iter(ids) if ids is not None else None
        count = 0
        with idx.lock:
            for doc in documents:
                if isinstance(doc, (bytes, bytearray)):
                    raw, parsed = bytes(doc), orjson.loads(doc)
                else:
                    raw, parsed = orjson.dumps(doc), doc
                idx.index_document(raw, parsed, next(id_iter) if id_iter is not None else None, "index")
                count += 1
        return count

    def delete_documents(self, name: str, ids: Iterable[str]) -> int:
        """Delete documents by id directly (no HTTP); returns how many existed."""
        idx = self.index(name)
        return sum(1 for doc_id in ids if idx.delete_document(str(doc_id)))

    def count(self, name: str) -> int:
        idx = self.index(name)
        snap = idx.snapshot()
        return int(idx.visible_mask(snap).sum())

    def sources(self, name: str) -> list[Any]:
        """Every visible document of an index, parsed (for test assertions)."""
        idx = self.index(name)
        snap = idx.snapshot()
        return [orjson.loads(idx.source(s)) for s in np.flatnonzero(idx.visible_mask(snap))]

    @property
    def open_pits(self) -> int:
        with self._lock:
            self._reap()
            return len(self._pits)

    @property
    def open_scrolls(self) -> int:
        with self._lock:
            self._reap()
            return len(self._scrolls)

    def requests(self, method: str | None = None, path_contains: str | None = None) -> list[LoggedRequest]:
        return [
            r
            for r in list(self.log)
            if (method is None or r.method == method) and (path_contains is None or path_contains in r.path)
        ]

    # -- contexts
    def _reap(self) -> None:
        now = self.now()
        for num in [n for n, p in self._pits.items() if p.expires_at < now]:
            del self._pits[num]
        for num in [n for n, s in self._scrolls.items() if s.expires_at < now]:
            del self._scrolls[num]

    @staticmethod
    def _encode_ctx(prefix: str, num: int, gen: int) -> str:
        payload = f"{prefix}:{num}:{gen}:".encode() + random.randbytes(24)
        return base64.urlsafe_b64encode(payload).decode()

    @staticmethod
    def _decode_ctx(prefix: str, text: Any) -> int | None:
        got = EsProtocolServer._decode_ctx_gen(prefix, text)
        return None if got is None else got[0]

    @staticmethod
    def _decode_ctx_gen(prefix: str, text: Any) -> tuple[int, int] | None:
        try:
            raw = base64.urlsafe_b64decode(str(text).encode())
            head, num, gen, _ = raw.split(b":", 3)
            return (int(num), int(gen)) if head.decode() == prefix else None
        except (ValueError, UnicodeDecodeError):
            return None

    def open_pit(self, name: str, keep_alive: str) -> str:
        idx = self.index(name)
        ka = parse_time_value(keep_alive)
        if ka > _MAX_KEEP_ALIVE_S:
            raise _bad_request(
                "Keep alive for request (1d) is too large. It must be less than (1d). "
                "This limit can be set by changing the [search.max_keep_alive] cluster level setting."
            )
        with self._lock:
            self._reap()
            num = next(self._ctx_counter)
            pit = _Pit(num, idx, idx.snapshot(), ka, self.now() + ka)
            if self.faults.pit_expire_after_pages is not None and self.faults.pit_expire_times > 0:
                pit.expire_after_pages = self.faults.pit_expire_after_pages
                self.faults.pit_expire_times -= 1
            self._pits[num] = pit
            self.pits_opened += 1
            return self._encode_ctx("pit", num, 0)

    def close_pit(self, pit_id: Any) -> bool:
        num = self._decode_ctx("pit", pit_id)
        with self._lock:
            self._reap()
            if num is not None and self._pits.pop(num, None) is not None:
                self.pits_closed += 1
                return True
        return False
