"""consumer.evaluation.stats: the sums give the metrics a direct numpy computation gives over the same pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.evaluation.stats import LiveStats, Sums

KEYS = [("1", "champion"), ("2", "canary"), ("2", "shadow")]


def direct(predictions: np.ndarray, actuals: np.ndarray) -> dict[str, float]:
    errors = predictions - actuals
    positive = actuals >= 1.0
    return {"count": len(errors), "rmse": float(np.sqrt(np.mean(errors ** 2))), "mae": float(np.mean(np.abs(errors))),
            "bias": float(np.mean(errors)),
            "mape": float(100 * np.mean(np.abs(errors[positive]) / actuals[positive])) if positive.any() else math.nan}


def assert_metrics(sums: Sums, predictions: np.ndarray, actuals: np.ndarray) -> None:
    expected, got = direct(predictions, actuals), sums.metrics()
    assert got["count"] == expected["count"]
    for name in ("rmse", "mae", "bias"):
        assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-6)
    if math.isnan(expected["mape"]):
        assert got["mape"] is None
    else:
        assert got["mape"] == pytest.approx(expected["mape"], rel=1e-9, abs=1e-9)


pairs = st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.floats(0, 1e6), st.floats(0, 1e6),
                           st.integers(0, 3_600_000)), min_size=1, max_size=200)


@settings(max_examples=60, deadline=None)
@given(pairs, st.integers(1, 5))
def test_since_start_and_window_equal_a_direct_computation(rows: list[tuple[int, float, float, int]],
                                                          chunks: int) -> None:
    stats = LiveStats(window_ms=600_000, bucket_ms=10_000)
    group, prediction, actual, at = (np.array(c) for c in zip(*rows, strict=True))
    for part in np.array_split(np.arange(len(rows)), chunks):  # added in several batches: same sums
        stats.add(KEYS, group[part], prediction[part], actual[part], at[part], np.zeros(len(part), dtype=np.int64))
    now = 3_600_000
    start = (now - 600_000) // 10_000 * 10_000
    for index, key in enumerate(KEYS):
        mine = group == index
        if not mine.any():
            assert key not in stats.groups
            continue
        assert_metrics(stats.groups[key].since_start, prediction[mine], actual[mine])
        in_window = mine & (at >= start)
        window = stats.window(key, now)
        if in_window.any():
            assert_metrics(window, prediction[in_window], actual[in_window])
        else:
            assert window.count == 0


def test_window_slides_and_prune_forgets_old_buckets() -> None:
    stats = LiveStats(window_ms=60_000, bucket_ms=10_000)
    stats.add(KEYS, np.array([0, 0]), np.array([10.0, 30.0]), np.array([0.0, 0.0]), np.array([5_000, 125_000]),
              np.array([1_000, 2_000]))
    assert stats.window(KEYS[0], 60_000).count == 2  # a pair newer than the clock (an input ahead) counts
    assert stats.window(KEYS[0], 100_000).count == 1
    assert stats.window(KEYS[0], 130_000).metrics()["rmse"] == pytest.approx(30.0)
    stats.prune(130_000)
    assert sorted(stats.groups[KEYS[0]].buckets) == [12]
    assert stats.groups[KEYS[0]].since_start.count == 2  # since start keeps everything
    assert stats.groups[KEYS[0]].since_start.metrics()["mean_delay_seconds"] == pytest.approx(1.5)
    assert stats.groups[KEYS[0]].since_start.metrics()["mape"] is None  # actual 0: no percentage


def test_state_round_trips() -> None:
    stats = LiveStats(window_ms=600_000, bucket_ms=10_000)
    stats.add(KEYS, np.array([0, 1, 2]), np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]),
              np.array([1, 2, 3]), np.array([0, 0, 0]))
    again = LiveStats(window_ms=600_000, bucket_ms=10_000)
    again.restore(stats.to_state())
    assert again.to_state() == stats.to_state()
