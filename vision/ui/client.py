"""Who a request comes from: the one client identity that every per-client limit uses.

The identity is the client address uvicorn puts in the ASGI scope. uvicorn replaces the socket's
peer with the address an ``X-Forwarded-For`` header names only when the peer is a trusted proxy
(``FORWARDED_ALLOW_IPS``; loopback by default), so a visitor who connects directly cannot pick
its own identity with a header. The REST rate limit, the REST bytes in flight and the queue's
per-client shares (``vision.ui.serving_rest``, ``vision.ui.bodies``, ``vision.ui.fairness``) all
key on this, so one visitor is one client everywhere.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping

#: What a request without a client address (a Unix socket, a test transport) counts as.
UNKNOWN = "unknown"
#: IPv6 hands every home and every cloud machine a /64: counted per address, one visitor would
#: be 2**64 clients.
IPV6_PREFIX = 64


def client_id(scope: Mapping[str, Any]) -> str:
    """The client a request counts against: its IPv4 address, or its IPv6 /64 network."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    if not host:
        return UNKNOWN
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]  # not an IP (a Unix socket's path): as the server named it
    if address.version == 6:
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is that IPv4 client
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)
