"""Refused admin calls, counted per client per minute (pure, thread-safe; no I/O).

A refused mutating call (401/403) used to be one audit line written on the event loop: a flood of
unauthenticated writes filled the disk and stalled the API. Now the auth middleware only counts it here, in
memory; ``admin_api.audit`` turns each closed window into one audit record (client, count, which requests) and
writes it from a worker thread. Memory is bounded: at most ``max_clients`` open windows (every client beyond
them shares one window, ``OTHER_CLIENTS``) and ``MAX_REQUEST_KINDS`` kinds of request per window.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Final

DEFAULT_WINDOW_SECONDS: Final = 60.0
DEFAULT_MAX_CLIENTS: Final = 10_000


@dataclass
class RefusalWindow:
    """The refusals of one client in one window (a wall-clock minute by default)."""

    client: str
    start: float
    """Start of the window, epoch seconds (a multiple of the window's length)."""
    first_at: float
    last_at: float
    result: str
    """The error code of the first refusal (``unauthorized``, ``forbidden``)."""
    status: int
    count: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    """``"PUT /api/mlflow/models/{name}/aliases/{alias} unauthorized"`` -> how many."""


class RefusalCounter:
    """Open windows by (client, window start).

    :param window: length of a window in seconds (aligned to the epoch: minutes start at :00).
    :param max_clients: open windows kept at most; refusals from further clients go to ``OTHER_CLIENTS``.
    """

    OTHER_CLIENTS: ClassVar[str] = "*"
    MAX_REQUEST_KINDS: ClassVar[int] = 20
    OTHER_REQUESTS: ClassVar[str] = "other requests"

    def __init__(self, window: float = DEFAULT_WINDOW_SECONDS, *, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self.window = window
        self.max_clients = max_clients
        self._open: dict[tuple[str, float], RefusalWindow] = {}
        self._clients = 0
        """Open windows that are not OTHER_CLIENTS'."""
        self._lock = threading.Lock()

    def add(self, client: str, request: str, result: str, status: int, now: float | None = None) -> bool:
        """Count one refusal of ``request`` (``"METHOD /route"``); True when it opened a window (the client's
        first refusal in this window)."""
        now = time.time() if now is None else now
        start = now - now % self.window
        with self._lock:
            key = (client, start)
            window = self._open.get(key)
            if window is None and self._clients >= self.max_clients:
                key = (self.OTHER_CLIENTS, start)
                window = self._open.get(key)
            opened = window is None
            if window is None:
                window = RefusalWindow(client=key[0], start=start, first_at=now, last_at=now, result=result,
                                       status=status)
                self._open[key] = window
                if key[0] != self.OTHER_CLIENTS:
                    self._clients += 1
            window.count += 1
            window.last_at = max(window.last_at, now)
            kind = f"{request} {result}"
            if kind not in window.requests and len(window.requests) >= self.MAX_REQUEST_KINDS:
                kind = self.OTHER_REQUESTS
            window.requests[kind] += 1
            return opened

    def due(self, now: float | None = None, *, everything: bool = False) -> list[RefusalWindow]:
        """Take the windows that have ended by ``now`` (all of them with ``everything``), oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            keys = [key for key, w in self._open.items() if everything or w.start + self.window <= now]
            closed = [self._open.pop(key) for key in keys]
            self._clients -= sum(1 for key in keys if key[0] != self.OTHER_CLIENTS)
        return sorted(closed, key=lambda w: w.start)

    def __len__(self) -> int:
        return len(self._open)
