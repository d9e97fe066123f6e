"""A per-client rate limit (pure, thread-safe): ``ADMIN_PREDICT_RATE_LIMIT`` calls per client per minute.

``POST /api/predict`` is open by default (it changes nothing, like the original API's), so without a limit any
client that reaches the port could keep the scorer's CPU busy with 5,000-row requests. Each client (the
connection's peer address; forwarded-for headers are not trusted, since anyone can send them) has a token
bucket that holds ``per_minute`` calls and refills at ``per_minute / 60`` per second: bursts up to the limit,
then one call per refill interval. Callers with the admin key are not limited (``admin_api.views.predict``).

Memory is bounded: at most ``max_clients`` buckets, the least recently seen dropped first (a dropped client
starts again with a full bucket, which only ever lets a call through that the limit would have allowed soon).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Final

DEFAULT_MAX_CLIENTS: Final = 10_000


class RateLimiter:
    """Token buckets by client.

    :param per_minute: calls per client per minute (the bucket's size); 0 turns the limit off.
    :param max_clients: buckets kept at most.
    """

    def __init__(self, per_minute: int, *, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._rate = per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """client -> (tokens left, when they were counted)."""
        self._lock = threading.Lock()

    def acquire(self, client: str, now: float | None = None) -> float | None:
        """Take one call from ``client``'s budget: None when it may go ahead, else the seconds until it may."""
        if self.per_minute <= 0:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, then = self._buckets.pop(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + max(0.0, now - then) * self._rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                wait = None
            else:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / self._rate
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)
