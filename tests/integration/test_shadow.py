"""Shadow scoring: each batch is also scored by the challenger; both predictions are in the output and the
metrics compare them. A broken challenger (a corrupt version, or one that fails at predict time) never
disturbs the champion's predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consumer.core.handle import ModelHandle
from consumer.kafka.control import publish_model_update
from consumer.service import ScorerService
from tests.helpers import produce_records, read_to_end, wait_for
from tests.integration.reload_support import (
    corrupt_version,
    decoded,
    move_alias,
    offline_predict,
    registry_estimator,
    scorer_overrides,
    two_versions,
)

pytestmark = pytest.mark.integration


class Exploding:
    def predict(self, frame: Any) -> np.ndarray:
        raise RuntimeError("challenger blew up")


def sample(service: ScorerService, name: str) -> float:
    return service.state.metrics.registry.get_sample_value(name) or 0.0


def test_shadow_predictions_present_and_a_broken_challenger_changes_nothing(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str) -> None:
    name, v1, v2 = two_versions(mlflow_tracking_uri, tmp_path, distinct=True)
    settings = settings_factory(stream_topics, **scorer_overrides(name, tmp_path / "v1" / "model.pkl", group_id,
                                                                  scorer__shadow_enabled=True))
    service = ScorerService(settings)
    service.start()
    try:
        assert service.state.models.shadow is not None and service.state.models.shadow.version == v2
        first = produce_records(settings, 200, prefix="both")
        assert wait_for(lambda: service.state.counts["scored"] >= 200, 30), service.state.counts
        assert wait_for(lambda: sample(service, "housing_scorer_shadow_abs_difference_count") > 0, 10)
        assert sample(service, "housing_scorer_shadow_abs_difference_sum") > 0  # a tree and a linear model disagree
        assert service.state.shadow_mean_abs_difference > 0

        # A corrupt challenger: the shadow load fails, the old shadow and the champion carry on.
        bad = corrupt_version(mlflow_tracking_uri, name)
        move_alias(mlflow_tracking_uri, name, "challenger", bad)
        last_champion_reload = service.state.last_reload
        event = publish_model_update(settings, type="promoted", model_name=name, version=bad, alias="challenger",
                                     source="admin_api")
        assert wait_for(lambda: (load := service.state.shadow_load) is not None
                        and load.result.event_id == event.event_id, 20)
        assert service.state.shadow_load.result.result == "failed"
        assert service.state.models.shadow.version == v2
        assert service.state.models.current.version == v1
        assert service.state.last_reload == last_champion_reload  # the champion's record is untouched

        # A challenger that fails at predict time: shadow fields go null, predictions do not change.
        service.state.models.set_shadow(ModelHandle(model=Exploding(), name=name, version="99",
                                                    alias="challenger", source="memory"))
        second = produce_records(settings, 100, prefix="broken", start=0)  # the same rows as before
        assert wait_for(lambda: service.state.counts["scored"] >= 300, 30), service.state.counts
        assert wait_for(lambda: sample(service, "housing_scorer_shadow_failures_total") > 0, 10)
    finally:
        service.stop()
    out = decoded(read_to_end(settings.kafka.bootstrap_servers, settings.topics.predictions))
    assert len(out) == 300 and {p["model_version"] for p in out} == {v1}
    both = [p for p in out if p["record_id"].startswith("both")]
    broken = [p for p in out if p["record_id"].startswith("broken")]
    assert len(both) == 200 and len(broken) == 100
    assert all(p["shadow_model_version"] == v2 and p["shadow_prediction"] is not None for p in both)
    # Each value is its model's own output on the row sent (the registry's models, loaded by MLflow itself).
    champion, challenger = (registry_estimator(mlflow_tracking_uri, name, v) for v in (v1, v2))
    rows = [first.rows[p["record_id"]] for p in both]
    assert [p["prediction"] for p in both] == pytest.approx(offline_predict(champion, rows), rel=1e-6)
    assert [p["shadow_prediction"] for p in both] == pytest.approx(offline_predict(challenger, rows), rel=1e-6)
    assert any(p["shadow_prediction"] != pytest.approx(p["prediction"], rel=1e-3) for p in both)
    assert all(p["shadow_prediction"] is None and p["shadow_model_version"] is None for p in broken)
    assert all(np.isfinite(p["prediction"]) for p in broken)
    assert sorted(first.good_keys) == sorted(p["record_id"] for p in both)
    assert sorted(second.good_keys) == sorted(p["record_id"] for p in broken)
    # The champion's predictions for the same rows are identical with a working or a broken shadow.
    with_shadow = {p["record_id"].rsplit("-", 1)[1]: p["prediction"] for p in both}
    with_broken = {p["record_id"].rsplit("-", 1)[1]: p["prediction"] for p in broken}
    # (up to the last bits: a linear model's dot products round differently in batches of other sizes)
    assert with_broken == pytest.approx({row: with_shadow[row] for row in with_broken}, rel=1e-9)
