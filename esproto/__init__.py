"""An in-process HTTP server that speaks enough of the Elasticsearch REST protocol for the
official ``elasticsearch`` client: the project's tests and benchmarks run against it because no
real Elasticsearch can run on the development and CI machines (see ``docs/elasticsearch.md``).

Usage (``from esproto import EsProtocolServer``)::

    with EsProtocolServer() as es:
        es.create_index("usage-events", mappings={"properties": {"@timestamp": {"type": "date"}}})
        es.add_documents("usage-events", docs)           # direct load, no HTTP
        client = Elasticsearch(es.url)
        ...
        assert es.open_pits == 0

What it imitates (single node, one shard per index):

* ``X-Elastic-Product: Elasticsearch`` on every response, errors included; JSON or the
  ``application/vnd.elasticsearch+json; compatible-with=8`` content type, as asked.
* ``GET /``, ``HEAD /``, ``PUT|HEAD|GET|DELETE /{index}``, ``POST /{index}/_refresh``,
  ``PUT|POST /_bulk`` and ``/{index}/_bulk`` (index, create, delete; per-item results),
  ``PUT|POST /{index}/_doc[/{id}]``, ``GET|DELETE /{index}/_doc/{id}``, ``POST /{index}/_count``,
  ``POST /{index}/_delete_by_query``,
  ``POST /{index}/_pit?keep_alive=``, ``DELETE /_pit``, ``POST /_search`` (with a PIT),
  ``POST /{index}/_search`` (plain, or ``?scroll=``), ``POST /_search/scroll``,
  ``DELETE /_search/scroll``.
* Search: ``query`` (``bool`` with ``filter``/``must``/``should``/``must_not``, ``term``,
  ``terms``, ``range``, ``exists``, ``ids``, ``match_all``, ``match_none``), ``sort`` on
  ``_doc``, ``_shard_doc`` and date/number fields, ``search_after`` (length checked against the
  sort), ``slice {id, max}``, ``size``/``from``, ``track_total_hits``, ``_source`` filtering,
  ``filter_path`` (``*`` and ``**`` wildcards); ``aggs`` with the ``composite`` aggregation
  (``terms`` and ``date_histogram`` sources, ``after``), see ``aggs``.
* Counters: ``hits_sent`` (documents in search answers), ``searches_with_aggs``,
  ``pits_opened``/``pits_closed``/``stale_pit_searches``; ``reset_counters()`` zeroes them.
* Documents are stored as the raw bytes they were indexed with (``_source`` comes back exactly as
  indexed) plus typed columns for queries: dates as int64 epoch ms (parsed like
  ``strict_date_optional_time||epoch_millis``, with ES's round-up of ``lte``/``gt`` bounds that
  lack components), keywords dictionary-encoded, numbers as float64. Unparsable dates are
  refused at index time like ES does (``document_parsing_exception``).
* A point in time is a snapshot of the index when it was opened (later documents are not seen),
  expires after its ``keep_alive`` and is gone after ``DELETE /_pit``. ``open_pits`` counts the
  live ones. PIT ids change on every response (clients must send back the newest one; older ids
  stay valid as in ES).

Simplifications: one shard; documents are visible at once (no refresh interval); dynamically
mapped strings are keywords (``x`` and ``x.keyword`` both work); array values are not indexed.

Fault injection (``es.faults``) and a request log (``es.log``) let tests break the transport and
check what the client sent.

Layout: ``server`` (the object tests hold: lifecycle, direct data access, clock, contexts),
``handler`` (HTTP plumbing), ``routes`` and ``search`` (endpoints), ``params``, ``index`` and
``query`` (storage and query evaluation), ``aggs`` (the composite aggregation), ``dates``,
``render`` (JSON, ``filter_path``, ``_source``), ``contexts`` (PIT, scroll), ``faults`` (fault
injection and the request log), ``errors``.
"""

from .dates import parse_date, parse_time_value
from .errors import EsError
from .faults import Faults, LoggedRequest
from .server import EsProtocolServer

__all__ = ["EsProtocolServer", "Faults", "LoggedRequest", "EsError", "parse_date", "parse_time_value"]
