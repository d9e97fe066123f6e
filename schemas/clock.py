"""The time unit of every message timestamp (``scored_at``, ``issued_at``, ``at``): epoch milliseconds."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
