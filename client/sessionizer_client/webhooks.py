"""Verify a completion push from Sessionizer (Standard Webhooks: ``webhook-id``,
``webhook-timestamp``, ``webhook-signature``).

    event = verify_webhook(request.headers, request.get_data(), "whsec_...")

Pass the body exactly as received (bytes): the signature covers those bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from .errors import SessionizerError

TOLERANCE_S = 300  # clock skew allowed between the service and the receiver, either way


class InvalidSignature(SessionizerError):
    """The push is not signed with this secret, lacks its headers, or is too old or too new."""


def _key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The event (``{"type", "timestamp", "data"}``) when ``body`` was signed with ``secret``
    within ``tolerance_s`` of ``now``; :class:`InvalidSignature` otherwise."""
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent = int(stamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        raise InvalidSignature("webhook-timestamp is too far from now (a replay, or clocks apart)")
    payload = body.encode() if isinstance(body, str) else bytes(body)
    mac = hmac.new(_key(secret), f"{msg_id}.{sent}.".encode() + payload, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    # several signatures may be sent (while a secret is being rotated), space-separated
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split()):
        raise InvalidSignature("no signature matches this secret")
    try:
        event: dict[str, Any] = json.loads(payload)
    except ValueError:
        raise InvalidSignature("the signed body is not JSON") from None
    return event
