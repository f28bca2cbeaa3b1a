"""Request bodies read as they arrive: a size limit, a floor rate, and bytes in flight.

uvicorn hands a body to the app chunk by chunk and stops reading the socket while the app has not
taken the last chunk, but nothing in it closes a connection whose body stops coming: its timeouts
cover idle keep-alive connections, not a request halfway through its body. So a body is read
here with a deadline on every chunk, and refused (the caller answers with ``Connection: close``,
which makes uvicorn close the socket) as soon as it is

- over its size limit (413), counted as it streams: nothing past the limit is kept;
- slower than ``BodyPace.floor_bytes_per_s`` once ``grace_s`` has passed, or silent for
  ``idle_s`` (408);
- more than its client may hold in flight, or more than the server holds in total (429 / 503).

A declared ``Content-Length`` is reserved in full before the first byte is read, so a client that
opens a hundred connections each announcing 60 MB is refused at the third, not after the
hundredth has sent its bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

Receive = Callable[[], Awaitable[dict[str, Any]]]
MB = 1024 * 1024


class BodyError(Exception):
    """A body refused while it was read: the HTTP status to answer with, and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BodyPace:
    """How slowly a body may arrive before its connection is closed."""

    grace_s: float = 5.0  # from the headers, before the floor rate applies
    floor_bytes_per_s: float = 64 * 1024  # averaged from the start of the body
    idle_s: float = 10.0  # the longest wait for one chunk, whatever was sent before


class InFlight:
    """The bytes of request bodies held now, per client and in total.

    Used from the event loop only (no lock): reserving and releasing are plain arithmetic
    between two awaits.
    """

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client, self.total = per_client, total
        self.held: defaultdict[str, int] = defaultdict(int)
        self.held_total = 0

    def reserve(self, client: str, size: int) -> None:
        """Count ``size`` more bytes for ``client``, or raise ``BodyError`` (429 or 503) and count nothing."""
        if self.held[client] + size > self.per_client:
            raise BodyError(429, f"this address already sends {self.held[client] / MB:.1f} MB of request bodies "
                                 f"and may have {self.per_client / MB:.0f} MB in flight; wait for those answers")
        if self.held_total + size > self.total:
            raise BodyError(503, "the server is reading too many request bodies right now; try again shortly")
        self.held[client] += size
        self.held_total += size

    def release(self, client: str, size: int) -> None:
        """Forget ``size`` bytes of ``client``'s."""
        self.held[client] -= size
        self.held_total -= size
        if self.held[client] <= 0:
            del self.held[client]  # the map holds only clients with bodies in flight

    @contextmanager
    def hold(self, client: str) -> Iterator["Held"]:
        """A ``Held`` for one request of ``client``'s, released when the block ends."""
        held = Held(self, client)
        try:
            yield held
        finally:
            self.release(client, held.size)


class Held:
    """What one request holds in an ``InFlight``; it only grows until the request ends."""

    def __init__(self, in_flight: InFlight, client: str) -> None:
        self.in_flight, self.client, self.size = in_flight, client, 0

    def at_least(self, size: int) -> None:
        """Hold ``size`` bytes in all (no change when already holding that many)."""
        if size > self.size:
            self.in_flight.reserve(self.client, size - self.size)
            self.size = size


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The ``Content-Length`` in raw ASGI headers, or None (chunked, or not a number)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(receive: Receive, limit: int | None, pace: BodyPace, *, declared: int | None = None,
                    held: Held | None = None, too_large: str = "request body too large") -> bytearray:
    """The whole body, read chunk by chunk from an ASGI ``receive``.

    Args:
        receive: the request's ASGI ``receive``.
        limit: the most bytes accepted (None: no size limit; ``held`` still bounds it).
        pace: how slowly the body may arrive.
        declared: the request's ``Content-Length``, reserved in full up front when given.
        held: where the bytes in flight are counted (None: not counted).
        too_large: the 413's message.

    Raises:
        BodyError: 413 over ``limit``, 408 too slow, 429/503 over what may be in flight, 400 when
            the client went away.
    """
    if limit is not None and declared is not None and declared > limit:
        raise BodyError(413, too_large)
    if held is not None and declared is not None:
        held.at_least(declared)
    body = bytearray()
    start = time.monotonic()
    while True:
        # The floor as a deadline: by then the body must have grown past what it has now.
        wait = min(pace.idle_s, start + pace.grace_s + len(body) / pace.floor_bytes_per_s - time.monotonic())
        try:
            if wait <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(receive(), wait)
        except TimeoutError:
            raise BodyError(408, f"the request body came slower than {pace.floor_bytes_per_s / 1024:.0f} KiB/s; "
                                 "the connection is closed") from None
        if message["type"] == "http.disconnect":
            raise BodyError(400, "the client closed the connection before its body ended")
        chunk = message.get("body", b"")
        if limit is not None and len(body) + len(chunk) > limit:
            raise BodyError(413, too_large)
        if held is not None:
            held.at_least(len(body) + len(chunk))
        body += chunk
        if not message.get("more_body", False):
            return body
