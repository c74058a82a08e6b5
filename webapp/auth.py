"""API keys: ``Authorization: Bearer <key>``; only the keys' SHA-256 digests are configured.

Keys are named (``API_KEYS="alice:<sha256 hex>,batch:<sha256 hex>"``, or ``[auth] keys`` in
``config/defaults.toml``); a job belongs to the name of the key that submitted it. Keys are long
random tokens, so a plain SHA-256 suffices (no salt or slow hash is needed against guessing).

``python -m webapp.auth new NAME`` prints a fresh key and the line to configure;
``python -m webapp.auth hash`` prints the digest of a key read from standard input;
``python -m webapp.auth webhook-secret NAME`` a secret signing key NAME's completion pushes.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import secrets
import sys
from typing import NoReturn

from flask import request
from flask_smorest import abort

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sessionizer"'}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_keys(spec: str) -> dict[str, str]:
    """``"name:digest,name:digest"`` -> {digest: name}. Refuses anything malformed, naming only
    the entry's position (the configuration might hold a key pasted by mistake)."""
    out: dict[str, str] = {}
    for i, entry in enumerate(e.strip() for e in (spec or "").replace("\n", ",").split(",")):
        if not entry:
            continue
        name, _, value = entry.partition(":")
        value = value.strip().lower()
        if not NAME.match(name.strip()) or not DIGEST.match(value):
            raise ValueError(
                f"API_KEYS entry {i + 1} is not NAME:SHA256HEX (make one with `python -m webapp.auth new NAME`)"
            )
        out[value] = name.strip()
    return out


def identify() -> tuple[str | None, str]:
    """Who is calling, judged locally: ``(key name, "")``, ``("", "")`` when the API runs without
    keys or anonymously, or ``(None, why)`` for a wrong or malformed key (to be counted against
    the client address before the 401). Aborts with 401 when a key is required and none is sent."""
    from .extensions import services

    svc = services()
    keys = svc.key_digests
    header = request.headers.get("Authorization")
    if header is None or not keys:
        if svc.settings.auth.required:
            abort(401, message="Send an API key: `Authorization: Bearer <key>`.", headers=CHALLENGE)
        return "", ""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, "Use `Authorization: Bearer <key>`."
    presented = digest(token)
    found = ""
    for known, name in keys.items():  # compare every digest, in constant time each
        if hmac.compare_digest(known, presented):
            found = name
    return (found, "") if found else (None, "Unknown API key.")


# query parameters a client may put a key in: refused on every path, whatever the headers say
KEY_PARAMETERS = frozenset({"api_key", "apikey", "api-key", "access_token", "token"})


def refuse_key_in_query() -> None:
    """422 naming the parameter for a key sent in the URL (``?api_key=``), on every path, before
    anything else is judged: a URL ends up in logs, histories and referers, so a key there is
    refused even beside a valid ``Authorization`` header."""
    sent = sorted(name for name in request.args if name.lower() in KEY_PARAMETERS)
    if sent:
        abort(
            422,
            messages={
                "query": {
                    name: ["API keys are accepted only in the `Authorization: Bearer` header, never in a URL."]
                    for name in sent
                }
            },
        )


def deny(why: str) -> NoReturn:
    abort(401, message=why, headers=CHALLENGE)
    raise AssertionError("abort returned")  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make API keys for Sessionizer.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="print a new key and its API_KEYS entry")
    new.add_argument("name")
    sub.add_parser("hash", help="print the API_KEYS digest of a key read from stdin")
    hook = sub.add_parser(
        "webhook-secret", help="print a new secret signing key NAME's pushes, and its WEBHOOK_SECRETS entry"
    )
    hook.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "webhook-secret":
        return _webhook_secret(parser, args.name)
    if args.command == "new":
        if not NAME.match(args.name):
            parser.error("NAME: 1 to 64 letters, digits, '_', '.', '-'")
        key = secrets.token_urlsafe(32)
        print(f"key (give it to the client; it is not stored): {key}")
        print(f"API_KEYS entry: {args.name}:{digest(key)}")
    else:
        print(digest(sys.stdin.readline().strip()))
    return 0


def _webhook_secret(parser: argparse.ArgumentParser, name: str) -> int:
    from sessionizer.webhooks.signing import new_secret

    if not NAME.match(name):
        parser.error("NAME: 1 to 64 letters, digits, '_', '.', '-'")
    secret = new_secret()
    print(f"secret (give it to the client, to verify its pushes): {secret}")
    print(
        "WEBHOOK_SECRETS entry (environment or config/credentials.yml, next to the key's API_KEYS entry): "
        f"{name}:{secret}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
