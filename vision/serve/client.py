"""Who a request comes from: the one client identity that every per-client limit uses.

The identity is the address of the hop that reached the first trusted proxy, read right to left
in ``X-Forwarded-For``: each proxy *appends* the address it saw, so entries to the right of the
first untrusted one were written by trusted proxies and everything to its left was written by the
client (and may be anything). The leftmost entry is never believed unless every hop is trusted.

Which peers are proxies is ``VISION_TRUSTED_PROXIES`` (read at import): a comma-separated list of
addresses and networks (default: uvicorn's ``FORWARDED_ALLOW_IPS``, else ``127.0.0.1``), or ``*``
for "the peer is always the one proxy" (a Hugging Face Space: only its proxy can reach the
container), where the identity is the rightmost entry, the one that proxy added. uvicorn's own
``FORWARDED_ALLOW_IPS=*`` takes the leftmost entry instead, which is why this does not rely on the
``client`` uvicorn rewrites; it reads the raw header from the scope.

The REST and gRPC rate limits, the bytes in flight, MCP calls and the queue's per-client shares all
key on ``client_id``/``client_address``, so one visitor is one client everywhere.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: What a request without a client address (a Unix socket, a test transport) counts as.
UNKNOWN = "unknown"
#: IPv6 hands every home and every cloud machine a /64: counted per address, one visitor would
#: be 2**64 clients.
IPV6_PREFIX = 64


class TrustedProxies:
    """The peers whose ``X-Forwarded-For`` is believed: addresses and networks, or ``*``."""

    def __init__(self, spec: str) -> None:
        items = [item.strip() for item in spec.split(",") if item.strip()]
        self.always = items == ["*"]  # the peer is the one proxy: believe exactly one hop
        self.networks = []
        for item in items if not self.always else []:
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                continue  # a name, not an address: never matches (uvicorn treats it alike)

    def __contains__(self, host: str) -> bool:
        address = _address(host)
        if self.always:
            return True
        return address is not None and any(address in network for network in self.networks)


def _default_spec(env: Mapping[str, str]) -> str:
    return env.get("VISION_TRUSTED_PROXIES") or env.get("FORWARDED_ALLOW_IPS") or "127.0.0.1"


#: The process's proxies; ``app.py`` sets ``VISION_TRUSTED_PROXIES=*`` on a Space before import.
TRUSTED = TrustedProxies(_default_spec(os.environ))


def client_address(peer: str, forwarded_for: Sequence[str], trusted: TrustedProxies = TRUSTED) -> str:
    """The address a request counts against, from its socket ``peer`` and the hops of its
    ``X-Forwarded-For`` (in header order): the rightmost hop not written by a trusted proxy."""
    hops = [hop for hop in (_host(entry) for entry in forwarded_for) if hop]
    if not peer or not hops or peer not in trusted:
        return peer
    if trusted.always:
        return hops[-1]  # the one proxy appended the address it saw; the rest came from the client
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0]  # every hop a trusted proxy: the first one is the client


def forwarded_hops(values: Iterable[str]) -> list[str]:
    """The entries of one or more ``X-Forwarded-For`` values, in order (several headers join)."""
    return [entry.strip() for value in values for entry in value.split(",") if entry.strip()]


def client_id(scope: Mapping[str, Any], trusted: TrustedProxies = TRUSTED) -> str:
    """The client an ASGI request counts against: its IPv4 address, or its IPv6 /64 network."""
    client = scope.get("client")
    peer = str(client[0]) if client else ""
    hops = forwarded_hops(value.decode("latin-1") for name, value in scope.get("headers", ())
                          if name == b"x-forwarded-for")
    # uvicorn may already have put a hop in "client" (it trusts FORWARDED_ALLOW_IPS): that hop is
    # one the header holds, so it is found again below, or it is an untrusted one and final.
    return normalize(client_address(peer, hops, trusted))


def normalize(host: str) -> str:
    """``host`` as a client key: an IPv4 address, an IPv6 /64, or (not an IP) the name, cut short."""
    if not host:
        return UNKNOWN
    address = _address(host)
    if address is None:
        return host[:100]  # not an IP (a Unix socket's path): as the server named it
    if address.version == 6:
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is that IPv4 client
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host(entry: str) -> str:
    """The host of one hop: ``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:80`` or ``::1``."""
    entry = entry.strip()
    if entry.startswith("["):
        return entry[1:entry.find("]")] if "]" in entry else entry
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry
