"""The official Elasticsearch client as this project builds it: orjson on the wire, measured
requests, no transport retries, the configured credentials."""

from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from sessionizer.settings import ElasticsearchSettings, Secret

from .es_node import MeasuredNode


def build_client(
    url: str,
    *,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    request_timeout_s: float = 30.0,
    verify_certs: bool = True,
    connections_per_node: int = 10,
) -> Elasticsearch:
    """The official client as this project uses it: orjson on the wire, no transport retries.

    The transport would retry 429/502/503/504 and connection errors up to 3 times *immediately*
    (no backoff), which hammers a cluster that is shedding load, and its retries would count
    against nothing we control. ``max_retries=0`` hands every retry decision to the source
    (``es_retry.py``: backoff with jitter, bounded attempts and time).
    """
    auth: dict[str, Any] = {}
    if api_key:
        auth["api_key"] = api_key
    elif username:
        auth["basic_auth"] = (username, password or "")
    return Elasticsearch(
        url,
        serializer=OrjsonSerializer(),
        request_timeout=request_timeout_s,
        verify_certs=verify_certs,
        max_retries=0,
        retry_on_timeout=False,
        connections_per_node=connections_per_node,
        node_class=MeasuredNode,  # counts and times every request (worker/metrics.py)
        **auth,
    )


def client_from_settings(es: ElasticsearchSettings, url: str | None = None) -> Elasticsearch:
    """The official client on ``url`` (default ``ELASTICSEARCH_URL``) with the configured credentials."""

    def reveal(secret: Secret | None) -> str | None:
        return secret.value if secret is not None else None

    return build_client(
        url or es.url,
        api_key=reveal(es.api_key),
        username=reveal(es.username),
        password=reveal(es.password),
        request_timeout_s=es.request_timeout_s,
        verify_certs=es.verify_certs,
    )
