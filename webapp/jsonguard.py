"""JSON nesting bounded before the body is parsed.

Python's ``json`` parser recurses once per nesting level: ``users`` nested 100,000 arrays deep
raised ``RecursionError`` (a 500) before any schema could look at it. A job request is at most a
few levels deep, so a body is checked first: when it holds more than ``max_depth`` brackets at
all (``bytes.count``, no Python loop, true of every real request), nothing more is done;
otherwise its strings and brackets are walked once, and the first bracket past ``max_depth`` is
reported with the top-level field it is under.
"""

from __future__ import annotations

import re

MAX_DEPTH = 32
# a JSON string (escapes included), or one bracket
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_KEY_END = re.compile(rb"\s*:")


def too_deep(body: bytes, max_depth: int = MAX_DEPTH) -> str | None:
    """``None`` when ``body`` nests at most ``max_depth`` levels; else the top-level field under
    which it goes deeper (``""`` when the body itself is the deep value)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return None
    depth, key = 0, ""
    for m in _TOKEN.finditer(body):
        token = m.group()
        if token[0] == 0x22:  # a string: remember the top-level keys
            if depth == 1 and _KEY_END.match(body, m.end()):
                key = token[1:-1].decode("utf-8", "replace")
        elif token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return key
        else:
            depth -= 1
    return None
