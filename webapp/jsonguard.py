"""JSON nesting and number lengths bounded before the body is parsed.

Python's ``json`` parser recurses once per nesting level: ``users`` nested 100,000 arrays deep
raised ``RecursionError`` (a 500) before any schema could look at it. A job request is at most a
few levels deep, so a body is checked first: when it holds more than ``max_depth`` brackets at
all (``bytes.count``, no Python loop, true of every real request), nothing more is done;
otherwise its strings and brackets are walked once, and the first bracket past ``max_depth`` is
reported with the top-level field it is under.

Numbers the same way: Python refuses to convert an integer of more than 4,300 digits
(``ValueError``, which the JSON parser lets through and webargs does not catch: a 500). No job
field needs more than a few digits, so a body whose digit runs are all short (one regular
expression search, true of every real request) is left alone; otherwise the first number longer
than ``MAX_NUMBER_CHARS`` outside a string is reported with the top-level field it is under.
"""

from __future__ import annotations

import re

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 64  # far beyond any float's 17 significant digits or an int64
# a JSON string (escapes included), or one bracket
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_KEY_END = re.compile(rb"\s*:")
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % MAX_NUMBER_CHARS)
# a JSON string, a bracket, or a number token too long (sign, digits, fraction, exponent)
_NUMBER_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]|-?[0-9][0-9.eE+-]{%d,}' % (MAX_NUMBER_CHARS - 1), re.DOTALL)


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


def too_long_number(body: bytes) -> str | None:
    """``None`` when no number in ``body`` is longer than ``MAX_NUMBER_CHARS``; else the
    top-level field that holds the first such number (``""`` when the body itself is one).
    Digits inside strings (a user named by a long number) are not numbers."""
    if not _LONG_DIGITS.search(body):
        return None
    depth, key = 0, ""
    for m in _NUMBER_TOKEN.finditer(body):
        token = m.group()
        if token[0] == 0x22:
            if depth == 1 and _KEY_END.match(body, m.end()):
                key = token[1:-1].decode("utf-8", "replace")
        elif token in (b"[", b"{"):
            depth += 1
        elif token in (b"]", b"}"):
            depth -= 1
        else:
            return key
    return None
