"""The event store: events parsed and checked once, kept per user in columns, read by units.

``segment.py`` is the file format (columnar, checksummed, written atomically); ``files.py`` the
store of the file source (a segment per piece of an event file); ``days.py`` the store of the
Elasticsearch source (a segment per user and settled UTC day, reused after one verification
request); ``budget.py`` keeps the whole under ``EVENT_STORE_MAX_BYTES``. The "The event store"
section of docs/configuration.md says what is kept, for how long, where, and how to clear it.
"""
