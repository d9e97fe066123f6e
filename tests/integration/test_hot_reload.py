"""Hot reload against the real broker and MLflow: promote under a continuous stream with no gap, keep the
old model when the new one is corrupt, ignore duplicate and stale events, roll back."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from consumer.kafka.control import publish_event, publish_model_update
from consumer.kafka.topic_reader import read_fleet
from consumer.service import ScorerService
from schemas.control import ModelUpdateEvent
from tests.conftest import train_quick_model
from tests.helpers import keys_of, produce_records, read_to_end, wait_for
from tests.integration.reload_support import (
    PacedProducer,
    corrupt_version,
    decoded,
    move_alias,
    offline_predict,
    registry_estimator,
    scored_by,
    scorer_overrides,
    switches_once,
    two_versions,
    versions_by_partition,
)

pytestmark = pytest.mark.integration


def answered(service: ScorerService, event_id: str) -> Any:
    def check() -> bool:
        last = service.state.last_reload
        return last is not None and last.event_id == event_id
    return check


def test_promotion_under_a_continuous_stream_switches_with_no_gap(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str) -> None:
    # v2 is another kind of model (a tree, v1 is linear): the predictions themselves show which one answered.
    name, v1, v2 = two_versions(mlflow_tracking_uri, tmp_path, distinct=True)
    settings = settings_factory(stream_topics, **scorer_overrides(name, tmp_path / "v1" / "model.pkl", group_id))
    service = ScorerService(settings)
    service.start()
    producer = PacedProducer(settings, rate=400)
    try:
        assert service.state.models.current.version == v1
        producer.start()
        assert wait_for(scored_by(service, v1), 30), service.state.counts
        move_alias(mlflow_tracking_uri, name, "champion", v2)
        event = publish_model_update(settings, type="promoted", model_name=name, version=v2, alias="champion",
                                     source="admin_api")
        assert wait_for(scored_by(service, v2), 15), service.state.last_reload
        switched = service.state.last_reload
        assert switched is not None and switched.result == "loaded" and switched.event_id == event.event_id
        fleet = read_fleet(settings)
        mine = fleet[settings.scorer.instance_id]
        assert (mine.model_version, mine.result, mine.event_id) == (v2, "loaded", event.event_id)
        # Keep streaming a little after the switch, then drain.
        produced_before_stop = len(producer.keys)
        assert wait_for(lambda: len(producer.keys) > produced_before_stop + 200, 10)
        sent = producer.stop()
        assert wait_for(lambda: service.state.counts["consumed"] >= len(sent), 60), service.state.counts
    finally:
        producer.stop()
        service.stop()
    predictions = read_to_end(settings.kafka.bootstrap_servers, settings.topics.predictions)
    dead = read_to_end(settings.kafka.bootstrap_servers, settings.topics.dead_letter)
    keys = keys_of(predictions)
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicates, duplicates[:5]
    assert set(keys) == set(sent) and len(keys) == len(sent), (len(keys), len(sent))
    assert dead == []
    by_partition = versions_by_partition(predictions)
    assert all(switches_once(seq, v1, v2) for seq in by_partition.values()), {
        p: Counter(seq) for p, seq in by_partition.items()}
    values = decoded(predictions)
    assert {v["model_version"] for v in values} == {v1, v2}
    # Each prediction is what its version's model (loaded by MLflow, not the scorer) says for that row.
    models = {v: registry_estimator(mlflow_tracking_uri, name, v) for v in (v1, v2)}
    wrong = []
    for version in (v1, v2):
        mine = [v for v in values if v["model_version"] == version]
        expected = offline_predict(models[version], [producer.row_of(v["record_id"]) for v in mine])
        other = offline_predict(models[v2 if version == v1 else v1], [producer.row_of(v["record_id"]) for v in mine])
        for value, want, not_want in zip(mine, expected, other, strict=True):
            if value["prediction"] != pytest.approx(want, rel=1e-6) or value["prediction"] == pytest.approx(
                    not_want, rel=1e-6):
                wrong.append((value["record_id"], version, value["prediction"], want, not_want))
    assert not wrong, f"{len(wrong)} predictions not their version's: {wrong[:5]}"
    first_new = min(v["scored_at"] for v in values if v["model_version"] == v2)
    latency = (first_new - event.issued_at) / 1000
    print(f"reload latency (event published -> first prediction by v{v2}): {latency:.2f}s; "
          f"load {switched.load_seconds:.2f}s")
    assert latency < 10


def test_a_corrupt_version_keeps_the_old_model_scoring(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str) -> None:
    name = f"hot_reload_bad_{time.time_ns() % 10**8}"
    good = train_quick_model(mlflow_tracking_uri, name, tmp_path, kinds=("linear_regression",), sample=500)
    bad = corrupt_version(mlflow_tracking_uri, name)
    settings = settings_factory(stream_topics, **scorer_overrides(name, good.fallback_path, group_id))
    service = ScorerService(settings)
    service.start()
    try:
        move_alias(mlflow_tracking_uri, name, "champion", bad)
        event = publish_model_update(settings, type="promoted", model_name=name, version=bad, alias="champion",
                                     source="admin_api")
        assert wait_for(answered(service, event.event_id), 30), service.state.last_reload
        result = service.state.last_reload
        assert result is not None and result.result == "failed" and result.version == bad
        assert "could not load" in result.detail and f"still serving {name} v{good.version}" in result.detail
        assert service.state.models.current.version == good.version
        assert service.state.last_reload_failure.version == bad
        status = read_fleet(settings)[settings.scorer.instance_id]
        assert (status.result, status.model_version, status.event_id) == ("failed", good.version, event.event_id)
        assert "could not load" in status.detail
        produced = produce_records(settings, 100)
        assert wait_for(lambda: service.state.counts["scored"] >= 100, 30), service.state.counts
    finally:
        service.stop()
    predictions = read_to_end(settings.kafka.bootstrap_servers, settings.topics.predictions)
    assert sorted(keys_of(predictions)) == sorted(produced.good_keys)
    assert {m.header_map["model_version"].decode() for m in predictions} == {good.version}


def test_announcement_duplicates_stale_events_and_rollback(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str) -> None:
    from training.announce import announce_promotion
    from training.register import TrainingConfig, train_and_register

    name = f"hot_reload_rb_{time.time_ns() % 10**8}"
    first = train_quick_model(mlflow_tracking_uri, name, tmp_path / "v1", kinds=("linear_regression",), sample=500)
    settings = settings_factory(stream_topics, **scorer_overrides(name, first.fallback_path, group_id))
    service = ScorerService(settings)
    service.start()
    try:
        # housing-train --promote announces: the scorer switches without a poll.
        result = train_and_register(TrainingConfig(
            tracking_uri=mlflow_tracking_uri, model_name=name, models=("decision_tree",), promote=True,
            fallback_path=str(tmp_path / "v2" / "model.pkl"), sample=500, progress=False))
        v1, v2 = first.version, str(result.version)
        announced = announce_promotion(settings, result)
        assert announced is not None and announced.version == v2 and announced.source == "training"
        assert wait_for(answered(service, announced.event_id), 20), service.state.last_reload
        assert service.state.last_reload.result == "loaded" and service.state.models.current.version == v2

        # A stale event (names v1 while the registry and the scorer are on v2) is ignored.
        ignored_before = service.state.metrics.reloads.labels(result="ignored")._value.get()
        stale = ModelUpdateEvent.new(type="promoted", model_name=name, version=v1, alias="champion", source="test")
        publish_event(settings, stale)
        assert wait_for(answered(service, stale.event_id), 20)
        assert service.state.last_reload.result == "ignored" and "stale" in service.state.last_reload.detail
        assert service.state.models.current.version == v2

        # Rollback returns to the previous version; the same event delivered again is ignored.
        rollback = ModelUpdateEvent.new(type="rollback", model_name=name, source="test")
        publish_event(settings, rollback)
        assert wait_for(answered(service, rollback.event_id), 20)
        assert service.state.last_reload.result == "loaded" and service.state.models.current.version == v1
        publish_event(settings, rollback)
        marker = ModelUpdateEvent.new(type="promoted", model_name=name, version=v1, alias="other", source="test")
        publish_event(settings, marker)  # events are handled in order: once this is answered, so was the dup
        assert wait_for(answered(service, marker.event_id), 20)
        assert service.state.models.current.version == v1
        ignored = service.state.metrics.reloads.labels(result="ignored")._value.get()
        assert ignored - ignored_before == 3  # stale, duplicate, other alias: each exactly once

        produced = produce_records(settings, 50)
        assert wait_for(lambda: service.state.counts["scored"] >= 50, 30)
    finally:
        service.stop()
    predictions = read_to_end(settings.kafka.bootstrap_servers, settings.topics.predictions)
    assert sorted(keys_of(predictions)) == sorted(produced.good_keys)
    assert {m.header_map["model_version"].decode() for m in predictions} == {v1}
