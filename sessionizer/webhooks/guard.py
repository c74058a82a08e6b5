"""The SSRF guard: which callback URLs may be called, and which addresses may be connected to.

A push goes only to ``https`` URLs whose host resolves to public addresses. The address is
checked where the connection is made (``worker/webhooks/sender.py`` connects to the very address
checked here), so a name that resolved to a public address at submit and to a private one later
(DNS rebinding) is refused then. ``WEBHOOK_ALLOW_PRIVATE=true`` lifts both rules, for
development and tests on loopback.

The resolver is a parameter (``socket.getaddrinfo`` by default) so the decision can be tested on
names without asking any DNS server.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

Resolver = Callable[..., list[tuple[Any, ...]]]
MAX_URL = 2048


class Refused(ValueError):
    """The URL or the address it leads to may not be called; the message says why."""


def is_public(address: str) -> bool:
    """Is ``address`` (an IP literal) a globally routable unicast address? Loopback, private,
    link-local (169.254.169.254: cloud metadata), shared (100.64/10), reserved, multicast and
    unspecified addresses are not; an IPv4-mapped IPv6 address is judged as its IPv4 one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def split_url(url: str, allow_private: bool) -> tuple[str, int]:
    """The host and port of a callback URL, or :class:`Refused` naming what is wrong with it."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise Refused(f"Not a URL (at most {MAX_URL} characters).")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("Not a URL.") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise Refused(
            "Only https URLs are called."
            if parts.scheme in ("http", "https") or not allow_private
            else "Only http and https URLs are called."
        )
    if not parts.hostname:
        raise Refused("Not a URL: no host.")
    if parts.username is not None or parts.password is not None:
        raise Refused("A callback URL may not carry credentials (user:password@).")
    if any(c.isspace() for c in url):
        raise Refused("Not a URL: it contains white space.")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def checked_addresses(host: str, port: int, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> list[str]:
    """The addresses ``host`` resolves to, every one of them public (unless ``allow_private``);
    :class:`Refused` otherwise. One private address among public ones refuses the host: the
    connection could be made to any of them."""
    try:
        addresses = [str(ipaddress.ip_address(host))]  # a literal: nothing to resolve
    except ValueError:
        try:
            infos = resolver(host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):  # ValueError: a NUL in the name
            raise Refused(f"The host {host[:100]!r} does not resolve.") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Refused(f"The host {host[:100]} does not resolve.")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise Refused(
                    f"The host {host[:100]} resolves to a private, loopback, link-local or reserved "
                    f"address ({address}); only public addresses are called."
                )
    return addresses


def refusal(url: str, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> str | None:
    """Why ``url`` may not be called (``None`` when it may), as checked at submit."""
    try:
        host, port = split_url(url, allow_private)
        checked_addresses(host, port, allow_private, resolver)
    except Refused as exc:
        return str(exc)
    return None
