"""Standard Webhooks signatures: ``v1,`` + base64(HMAC-SHA256(secret, ``id.timestamp.body``)).

A secret is ``whsec_`` + base64 of random bytes (24 here, within the specification's 24 to 64).
The API runs with one secret per API key name (``WEBHOOK_SECRETS``) or, without keys, one for
the deployment (``WEBHOOK_SECRET``)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

PREFIX = "whsec_"
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # as API key names (webapp/auth.py)


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_bytes(secret: str) -> bytes:
    """The key a ``whsec_`` secret stands for; ``ValueError`` when it is not one (without echoing it)."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if len(key) < 24 or len(key) > 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


def parse_secrets(spec: str) -> dict[str, str]:
    """``"NAME:whsec_...,NAME2:whsec_..."`` -> {name: secret}; a malformed entry is named by its
    position only (the value is a secret)."""
    out: dict[str, str] = {}
    for i, entry in enumerate(e.strip() for e in (spec or "").replace("\n", ",").split(",")):
        if not entry:
            continue
        name, _, value = entry.partition(":")
        try:
            if not NAME.match(name.strip()):
                raise ValueError
            secret_bytes(value.strip())
        except ValueError:
            raise ValueError(
                f"WEBHOOK_SECRETS entry {i + 1} is not NAME:whsec_BASE64 "
                "(make one with `python -m webapp.auth webhook-secret NAME`)"
            ) from None
        out[name.strip()] = value.strip()
    return out


def secret_for(owner: str, deployment: str | None, per_key: str | None) -> str | None:
    """The secret that signs an owner's pushes: its key's (``owner`` is the key's name), or the
    deployment's when the API runs without keys (``owner`` empty); ``None`` when there is none."""
    if owner:
        return parse_secrets(per_key or "").get(owner)
    return deployment or None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of one attempt."""
    mac = hmac.new(secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()
