"""Live accuracy sums per (model version, role): since the version's first matched pair and over a sliding
window of time buckets. Pure: numpy only.

A matched pair is (prediction, actual, at, delay): ``at`` is the outcome's ``observed_at`` (event time, so a
backlog read at any speed lands in the same buckets), ``delay`` how long after the prediction the outcome was
observed. Pairs are added a batch at a time (``LiveStats.add``, vectorised with ``np.bincount``); the metrics come
from the sums: count, RMSE, MAE, bias (mean of prediction - actual) and MAPE (over pairs with actual >= 1 dollar).
The sums are kept (not only the metrics) so a later gate can compare two versions on the same window with
their counts and variances, and so a checkpoint restores them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import Any, Final

import numpy as np

ROLES: Final = ("champion", "canary", "shadow")
"""Where a prediction came from: the served model, the canary serving a share of keys, or the shadow (scored,
not served). Read from the prediction message (``role``; without one, ``champion``; ``shadow_prediction`` is the
shadow's)."""

MAPE_MIN_ACTUAL: Final = 1.0
"""MAPE counts the pairs whose actual is at least one dollar: a percentage of (almost) nothing is no figure."""

GroupKey = tuple[str, str]
"""(model_version, role)."""


@dataclass
class Sums:
    """Running sums of a set of matched pairs; errors are prediction - actual."""

    count: int = 0
    sum_error: float = 0.0
    sum_abs_error: float = 0.0
    sum_squared_error: float = 0.0
    sum_abs_pct_error: float = 0.0
    """Sum of |error| / actual over the pairs with actual >= ``MAPE_MIN_ACTUAL`` (``pct_count`` of them)."""
    pct_count: int = 0
    sum_delay_ms: float = 0.0
    """Sum of observed_at - scored_at: how late the outcomes came."""

    def merge(self, other: Sums) -> None:
        self.count += other.count
        self.sum_error += other.sum_error
        self.sum_abs_error += other.sum_abs_error
        self.sum_squared_error += other.sum_squared_error
        self.sum_abs_pct_error += other.sum_abs_pct_error
        self.pct_count += other.pct_count
        self.sum_delay_ms += other.sum_delay_ms

    def metrics(self) -> dict[str, float | int | None]:
        """count, rmse, mae, bias, mape (percent), mean join delay in seconds; None where there is no pair."""
        n = self.count
        return {
            "count": n,
            "rmse": math.sqrt(self.sum_squared_error / n) if n else None,
            "mae": self.sum_abs_error / n if n else None,
            "bias": self.sum_error / n if n else None,
            "mape": 100.0 * self.sum_abs_pct_error / self.pct_count if self.pct_count else None,
            "mean_delay_seconds": self.sum_delay_ms / n / 1000.0 if n else None,
        }

    def as_list(self) -> list[float]:
        return list(astuple(self))

    @classmethod
    def from_list(cls, values: Sequence[float]) -> Sums:
        count, se, sae, sse, sape, pct, sdelay = values
        return cls(int(count), float(se), float(sae), float(sse), float(sape), int(pct), float(sdelay))


@dataclass
class GroupStats:
    """One (version, role): its sums since its first pair and per bucket of the sliding window."""

    since_start: Sums
    buckets: dict[int, Sums]
    """bucket index (``at // bucket_ms``) -> sums of the pairs observed in it."""
    first_at: int
    """observed_at of its first matched pair (ms)."""
    last_at: int


class LiveStats:
    """The sums of every (model version, role) seen.

    :param window_ms: the sliding window's length.
    :param bucket_ms: its granularity: the window covers the buckets that overlap ``[now - window, now]``.
    """

    def __init__(self, window_ms: int, bucket_ms: int) -> None:
        if window_ms <= 0 or bucket_ms <= 0:
            raise ValueError("window and bucket must be > 0 ms")
        self.window_ms = window_ms
        self.bucket_ms = min(bucket_ms, window_ms)
        self.groups: dict[GroupKey, GroupStats] = {}

    def add(self, keys: Sequence[GroupKey], group: np.ndarray, prediction: np.ndarray, actual: np.ndarray,
            at_ms: np.ndarray, delay_ms: np.ndarray) -> None:
        """Add matched pairs, one array element each.

        :param keys: the group keys the ``group`` indexes point at.
        :param group: index into ``keys`` per pair (int array).
        :param prediction: predicted values; ``actual`` the observed ones (finite, >= 0).
        :param at_ms: observed_at per pair; ``delay_ms`` observed_at - scored_at per pair.
        """
        if len(group) == 0:
            return
        group = np.asarray(group, dtype=np.int64)
        error = np.asarray(prediction, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
        actual = np.asarray(actual, dtype=np.float64)
        at_ms = np.asarray(at_ms, dtype=np.int64)
        abs_error = np.abs(error)
        positive = actual >= MAPE_MIN_ACTUAL
        pct = np.where(positive, abs_error / np.where(positive, actual, 1.0), 0.0)
        bucket = at_ms // self.bucket_ms
        cells, inverse = np.unique(np.stack([group, bucket], axis=1), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        size = len(cells)
        columns = [np.bincount(inverse, minlength=size),
                   np.bincount(inverse, weights=error, minlength=size),
                   np.bincount(inverse, weights=abs_error, minlength=size),
                   np.bincount(inverse, weights=error * error, minlength=size),
                   np.bincount(inverse, weights=pct, minlength=size),
                   np.bincount(inverse, weights=positive.astype(np.float64), minlength=size),
                   np.bincount(inverse, weights=np.asarray(delay_ms, dtype=np.float64), minlength=size)]
        first = np.full(size, np.iinfo(np.int64).max)
        last = np.full(size, np.iinfo(np.int64).min)
        np.minimum.at(first, inverse, at_ms)
        np.maximum.at(last, inverse, at_ms)
        for i, (g, b) in enumerate(cells.tolist()):
            sums = Sums.from_list([column[i] for column in columns])
            key = keys[g]
            stats = self.groups.get(key)
            if stats is None:
                stats = self.groups[key] = GroupStats(Sums(), {}, int(first[i]), int(last[i]))
            stats.since_start.merge(sums)
            cell = stats.buckets.get(b)
            if cell is None:
                stats.buckets[b] = sums
            else:
                cell.merge(sums)
            stats.first_at = min(stats.first_at, int(first[i]))
            stats.last_at = max(stats.last_at, int(last[i]))

    def window_start_bucket(self, now_ms: int) -> int:
        return (now_ms - self.window_ms) // self.bucket_ms

    def window(self, key: GroupKey, now_ms: int) -> Sums:
        """The sums of ``key``'s pairs in the buckets that overlap ``[now - window, now]``."""
        total = Sums()
        stats = self.groups.get(key)
        if stats is None:
            return total
        start = self.window_start_bucket(now_ms)
        for bucket, sums in stats.buckets.items():
            if bucket >= start:
                total.merge(sums)
        return total

    def prune(self, now_ms: int) -> None:
        """Forget buckets that are out of the window for good (``now`` only moves forward)."""
        start = self.window_start_bucket(now_ms)
        for stats in self.groups.values():
            for bucket in [b for b in stats.buckets if b < start]:
                del stats.buckets[bucket]

    def __iter__(self) -> Iterator[tuple[GroupKey, GroupStats]]:
        return iter(sorted(self.groups.items()))

    def to_state(self) -> list[dict[str, Any]]:
        """JSON-ready, for the checkpoint."""
        return [{"model_version": version, "role": role, "first_at": s.first_at, "last_at": s.last_at,
                 "since_start": s.since_start.as_list(),
                 "buckets": [[b, sums.as_list()] for b, sums in sorted(s.buckets.items())]}
                for (version, role), s in self]

    def restore(self, state: Sequence[Mapping[str, Any]]) -> None:
        """Replace the sums with a checkpoint's (``to_state``)."""
        self.groups = {
            (str(g["model_version"]), str(g["role"])): GroupStats(
                Sums.from_list(g["since_start"]), {int(b): Sums.from_list(v) for b, v in g["buckets"]},
                int(g["first_at"]), int(g["last_at"]))
            for g in state
        }
