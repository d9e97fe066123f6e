"""Canary routing: which records of a batch the canary scores instead of the champion. Pure.

A record goes to the canary when its key's bucket is below ``fraction`` of the bucket space. The bucket is the
first 8 bytes of the SHA-256 of the key's bytes, read as an unsigned big-endian integer: the same key always
lands in the same bucket, in every process, on every machine and after every restart (Python's ``hash()`` is
salted per process, so it is never used here). Raising the fraction only adds keys to the canary (a key on the
canary at 10 % stays on it at 20 %). A record without a key has no stable identity: the champion scores it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import numpy as np

BUCKETS: Final = 1 << 64
"""Size of the bucket space: a key's bucket is in [0, 2**64)."""
ROLE_CHAMPION: Final = "champion"
ROLE_CANARY: Final = "canary"


def key_bucket(key: bytes) -> int:
    """The key's bucket: the first 8 bytes of SHA-256(key), big-endian, in [0, 2**64)."""
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def threshold(fraction: float) -> int:
    """Buckets below this go to the canary; 0 for a fraction <= 0, 2**64 for >= 1.

    :raises ValueError: the fraction is not a finite number.
    """
    if fraction != fraction or fraction in (float("inf"), float("-inf")):
        raise ValueError(f"canary fraction must be finite, got {fraction!r}")
    if fraction <= 0.0:
        return 0
    if fraction >= 1.0:
        return BUCKETS
    return int(fraction * BUCKETS)


def routes_to_canary(key: bytes | None, fraction: float) -> bool:
    """Whether the record with this key is scored by the canary at this fraction."""
    return key is not None and key_bucket(key) < threshold(fraction)


def canary_mask(keys: Sequence[bytes | None], fraction: float) -> np.ndarray:
    """A bool per key, True where the canary scores the record (one SHA-256 per key, compared as one array).

    :param keys: the records' Kafka keys in batch order (None: no key, the champion's).
    :param fraction: the canary's share of the key space, 0..1.
    """
    limit = threshold(fraction)
    count = len(keys)
    if limit == 0 or count == 0:
        return np.zeros(count, dtype=bool)
    sha256 = hashlib.sha256
    digests = b"".join(sha256(key).digest()[:8] if key is not None else b"\xff" * 8 for key in keys)
    buckets = np.frombuffer(digests, dtype=">u8")
    has_key = np.fromiter((key is not None for key in keys), dtype=bool, count=count)
    if limit >= BUCKETS:
        return has_key
    return (buckets < np.uint64(limit)) & has_key
