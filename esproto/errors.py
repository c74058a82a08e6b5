"""Elasticsearch-shaped errors: the JSON body and status ES answers with."""

from __future__ import annotations


class EsError(Exception):
    """An error answered with Elasticsearch's error body."""

    def __init__(
        self,
        status: int,
        type_: str,
        reason: str,
        *,
        root: list[dict] | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason = status, type_, reason
        self.root = root if root is not None else [{"type": type_, "reason": reason}]
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict:
        err = {"root_cause": self.root, "type": self.type, "reason": self.reason, **self.extra}
        return {"error": err, "status": self.status}


def _bad_request(reason: str, type_: str = "illegal_argument_exception") -> EsError:
    return EsError(400, type_, reason)


def _query_error(reason: str, type_: str = "query_shard_exception", index: str | None = None) -> EsError:
    root = {"type": type_, "reason": reason, "index": index}
    return EsError(
        400,
        "search_phase_execution_exception",
        "all shards failed",
        root=[root],
        extra={"phase": "query", "grouped": True, "failed_shards": [{"shard": 0, "index": index, "reason": root}]},
    )


def _index_not_found(name: str) -> EsError:
    return EsError(
        404,
        "index_not_found_exception",
        f"no such index [{name}]",
        root=[
            {
                "type": "index_not_found_exception",
                "reason": f"no such index [{name}]",
                "resource.type": "index_or_alias",
                "resource.id": name,
                "index": name,
            }
        ],
        extra={"resource.type": "index_or_alias", "resource.id": name, "index": name},
    )


def _context_missing(what: str) -> EsError:
    # ES wraps it: type search_phase_execution_exception, root cause search_context_missing_exception
    reason = f"No search context found for id [{what}]"
    root = {"type": "search_context_missing_exception", "reason": reason}
    return EsError(
        404,
        "search_phase_execution_exception",
        "all shards failed",
        root=[root],
        extra={
            "phase": "query",
            "grouped": True,
            "failed_shards": [{"shard": -1, "index": None, "reason": root}],
            "caused_by": root,
        },
    )
