"""The shadow monitor: differences between champion and shadow predictions, and shadow failures."""

from __future__ import annotations

import numpy as np
import pytest

from config.settings import load_settings
from consumer.core.scoring import BatchResult, Incoming, Scored
from consumer.monitoring.shadow import ShadowMonitor, mean_abs_difference
from consumer.state import ScorerState
from schemas.codecs import PredictionEncoder, WireFormat
from tests.unit.consumer.handles import handle


def test_mean_abs_difference_skips_rows_without_a_shadow_prediction() -> None:
    assert mean_abs_difference([(10.0, 12.0), (5.0, None), (1.0, -1.0)]) == pytest.approx(2.0)
    assert mean_abs_difference([(1.0, None)]) is None
    assert mean_abs_difference([]) is None


def test_shadow_monitor_observes_the_difference_and_counts_failures() -> None:
    settings = load_settings({"model.name": "m"}, env={})
    state = ScorerState(settings, model=handle("1"))
    encoder = PredictionEncoder(None)
    source = Incoming(b"k", b"{}", "t", 0, 0)

    def batch(pairs: list[tuple[float, float | None]]) -> BatchResult:
        scored = [Scored(b"k", encoder.encode({
            "record_id": f"r{i}", "prediction": p, "model_name": "m", "model_version": "1", "model_alias": None,
            "model_stage": None, "scored_at": 1, "source_topic": "t", "source_partition": 0, "source_offset": i,
            "event_time": None, "shadow_prediction": s, "shadow_model_version": None if s is None else "2"},
            WireFormat.JSON), [], source, f"r{i}", p) for i, (p, s) in enumerate(pairs)]
        return BatchResult(scored, [], None, np.array([p for p, _ in pairs]))

    monitor = ShadowMonitor(state).start()
    state.models.set_shadow(handle("2"))
    monitor.hook(batch([(100.0, 110.0), (200.0, 170.0)]), handle("1"))
    monitor.hook(batch([(100.0, None)]), handle("1"))  # a shadow was set but gave nothing: a failure
    monitor.stop()
    registry = state.metrics.registry
    assert registry.get_sample_value("housing_scorer_shadow_abs_difference_sum") == pytest.approx(20.0)
    assert registry.get_sample_value("housing_scorer_shadow_abs_difference_count") == 1
    assert registry.get_sample_value("housing_scorer_shadow_failures_total") == 1
    assert state.shadow_mean_abs_difference == pytest.approx(20.0)
