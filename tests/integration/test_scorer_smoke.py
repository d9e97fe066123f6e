"""The scorer in-process against the real broker and MLflow: every input becomes one output."""

from __future__ import annotations

import pytest

from consumer.service import ScorerService
from tests.helpers import produce_records, read_to_end, wait_for

pytestmark = pytest.mark.integration


def test_records_in_predictions_and_dead_letters_out(scorer_settings, registered_model) -> None:
    produce_records(scorer_settings, count=300, bad_every=10)
    service = ScorerService(scorer_settings)
    service.start()
    try:
        assert service.state.models.current.version == registered_model.version
        assert wait_for(lambda: service.state.counts["consumed"] >= 300, 60), service.state.counts
        assert service.state.ready
    finally:
        service.stop()
    predictions = read_to_end(scorer_settings.kafka.bootstrap_servers, scorer_settings.topics.predictions)
    dead = read_to_end(scorer_settings.kafka.bootstrap_servers, scorer_settings.topics.dead_letter)
    assert len(predictions) == 270 and len(dead) == 30, (len(predictions), len(dead))
    assert {dict(m.headers)["model_version"] for m in predictions} == {registered_model.version.encode()}
