"""The HTTP node the Elasticsearch client sends through, measured: every request is counted by
operation and status, timed, and points in time opened and closed are counted (worker/metrics.py).

Measured at the node, below the client, so every request counts, whichever code path sent it."""

from __future__ import annotations

import time
from typing import Any

from elastic_transport import Urllib3HttpNode
from elastic_transport.client_utils import DEFAULT

from ..metrics import record_es_request


class MeasuredNode(Urllib3HttpNode):
    def perform_request(
        self, method: str, target: str, body: bytes | None = None, headers: Any = None, request_timeout: Any = DEFAULT
    ) -> Any:
        started = time.perf_counter()
        status: int | None = None
        try:
            resp = super().perform_request(method, target, body=body, headers=headers, request_timeout=request_timeout)
            status = resp.meta.status
            return resp
        finally:
            record_es_request(method, target, status, time.perf_counter() - started)
