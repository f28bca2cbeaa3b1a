"""What clients of the serving protocols may ask of them, and the per-client token buckets."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from vision.serve.bodies import MB, BodyPace


@dataclass(frozen=True)
class ServingLimits:
    """What clients of the REST and gRPC APIs (``vision.serve``) may ask of them. The rate limit and
    the batch size apply in public mode; the bounds on bodies in flight always do."""

    images_per_s: float = 5.0  # the per-client token bucket's refill rate; GETs cost one token too
    burst: int = 20  # the bucket's size
    max_instances: int = 16  # images in one request
    bytes_per_token: int = 4 * MB  # a :predict body costs a token more per this many bytes
    pace: BodyPace = BodyPace()  # a body slower than this is refused and its connection closed
    # Bodies being read or decoded, counted from their Content-Length: a client that announces
    # more waits for its earlier answers (429); the server as a whole holds at most ``total_bytes``
    # (503). Room for two full-size images (50 MB as base64 is 67 MB) per client.
    client_bytes: int = 160 * MB
    total_bytes: int = 512 * MB
    decoders: int = 2  # requests parsed, decoded and run at once; each holds ~3x its body at its peak


class TokenBuckets:
    """One token bucket per key (a client host): ``rate`` tokens a second, at most ``burst``."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens from ``key``'s bucket; 0 when granted, else the seconds until
        they would be (nothing is taken then)."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                return (min(cost, self.burst) - tokens) / self.rate
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._forget_full(now)
            self._buckets[key] = (tokens - cost, now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: keeps the map bounded.
        for key, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.burst:
                del self._buckets[key]
