"""Cursors sealed for their owner: opaque, and telling nothing about other keys.

A listing's position is the store's global ``seq`` (every key's jobs count it), and a page of
sessions is a (unit, offset) in a job: given in the clear, a key decoding its own cursor learned
how many jobs the other keys had submitted. A cursor is now the position encrypted and
authenticated with a server secret (:meth:`JobStore.cursor_secret`, the same for every API
process), bound to the key that asked and to what it pages (``scope``: the listing, or one
job's sessions):

``base64url(nonce[12] | position XOR HMAC-SHA256(k_enc, nonce)[:8n]
| HMAC-SHA256(k_mac, scope | owner | nonce | ct)[:16])``

The position is ``n`` fixed-width 64-bit integers, so the length says nothing either. Only the
standard library's HMAC-SHA256 is used (a PRF keystream and encrypt-then-MAC): the API takes no
cryptography dependency for eight bytes. Another key's cursor, an edited one, or one of another
listing is the same 422 as garbage.

:class:`Cursor` is the query-string field that reads them back; :func:`listing_scope` and
:func:`sessions_scope` name what a cursor pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable
from typing import Any

from flask import current_app, g, request
from marshmallow import ValidationError, fields, validate

NONCE, TAG, MAX_PARTS = 12, 16, 4


class BadCursor(ValueError):
    """Not a cursor this API gave to this key for this listing."""


def _keys() -> tuple[bytes, bytes]:
    cached = current_app.extensions.get("sessionizer.cursor_keys")
    if cached is None:
        from .extensions import services

        secret = services().store.cursor_secret()
        cached = (
            hmac.digest(secret, b"cursor-encrypt", hashlib.sha256),
            hmac.digest(secret, b"cursor-authenticate", hashlib.sha256),
        )
        current_app.extensions["sessionizer.cursor_keys"] = cached
    return cached


def _owner() -> bytes:
    return str(g.get("owner") or "").encode()


def _tag(k_mac: bytes, scope: str, nonce: bytes, body: bytes) -> bytes:
    owner = _owner()
    message = struct.pack(">H", len(scope)) + scope.encode() + struct.pack(">H", len(owner)) + owner + nonce + body
    return hmac.digest(k_mac, message, hashlib.sha256)[:TAG]


def seal(scope: str, *parts: int) -> str:
    """The cursor of ``parts`` (non-negative integers) for this request's owner and ``scope``."""
    k_enc, k_mac = _keys()
    nonce = secrets.token_bytes(NONCE)
    plain = struct.pack(f">{len(parts)}Q", *parts)
    body = bytes(a ^ b for a, b in zip(plain, hmac.digest(k_enc, nonce, hashlib.sha256), strict=False))
    return base64.urlsafe_b64encode(nonce + body + _tag(k_mac, scope, nonce, body)).decode().rstrip("=")


def unseal(value: str, scope: str, size: int) -> tuple[int, ...]:
    """The ``size`` integers of a cursor :func:`seal` gave this owner for ``scope``."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadCursor from exc
    if not 1 <= size <= MAX_PARTS or len(raw) != NONCE + 8 * size + TAG:
        raise BadCursor
    nonce, body, tag = raw[:NONCE], raw[NONCE:-TAG], raw[-TAG:]
    k_enc, k_mac = _keys()
    if not hmac.compare_digest(tag, _tag(k_mac, scope, nonce, body)):
        raise BadCursor
    plain = bytes(a ^ b for a, b in zip(body, hmac.digest(k_enc, nonce, hashlib.sha256), strict=False))
    return struct.unpack(f">{size}Q", plain)


def listing_scope() -> str:
    """What a ``/jobs`` cursor pages (a cursor is bound to it and to the owner)."""
    return "jobs"


def sessions_scope(job_id: str | None = None) -> str:
    """What a sessions cursor pages: that one job's sessions."""
    return f"sessions:{job_id if job_id is not None else (request.view_args or {}).get('job_id', '')}"


class Cursor(fields.String):
    """An opaque position in a listing, as returned in ``next_cursor``: sealed for the key that
    asked and the listing it pages (``scope()``, read when the request is)."""

    def __init__(self, size: int, scope: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(validate=validate.Length(min=1, max=100), **kwargs)
        self.size, self.scope = size, scope

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[int, ...]:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return unseal(text, self.scope(), self.size)
        except BadCursor as exc:
            raise ValidationError("Not a cursor this API gave for this listing.") from exc
