"""Redis replies as Python values. The store's clients do not decode (a unit's sessions are stored
JSON, read as bytes and streamed as they are), and redis-py types every reply loosely
(``bytes | str``, a script's numbers as ints): these narrow them, in one place."""

from __future__ import annotations


def text(reply: bytes | str | int) -> str:
    """A Redis reply as text: the store's clients answer bytes (and a script's numbers as ints)."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def text_pairs(flat: list[bytes]) -> dict[str, str]:
    """A hash as a script returns it (``HGETALL``: field, value, field, value...), as text."""
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def blob(reply: bytes | str) -> bytes:
    """A Redis reply as the bytes it holds (stored JSON, a secret)."""
    return reply if isinstance(reply, bytes) else reply.encode()
