"""consumer.kafka.topic_reader without a broker: the fleet view and the history built from a topic's messages."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.kafka import topic_reader
from consumer.kafka.topic_reader import read_fleet, read_model_updates
from schemas.control import ModelUpdateEvent, ScorerStatus
from tests.unit.consumer.kafka.control_fakes import FakeMessage, settings


def status(instance: str, result: str, at: int) -> ScorerStatus:
    return ScorerStatus(instance_id=instance, model_name="m", model_version="1", result=result, at=at)


def serve(monkeypatch: pytest.MonkeyPatch, messages: list[FakeMessage]) -> list[tuple[str, str]]:
    asked: list[tuple[str, str]] = []

    def read_topic(_settings: Any, topic: str, timeout: float = 5.0, *, purpose: str = "reader") -> Any:
        asked.append((topic, purpose))
        return messages

    monkeypatch.setattr(topic_reader, "read_topic", read_topic)
    return asked


def test_fleet_is_the_latest_status_per_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings()
    asked = serve(monkeypatch, [
        FakeMessage(status("a", "started", 1).to_bytes(), key=b"a"),
        FakeMessage(status("b", "started", 2).to_bytes(), key=b"b"),
        FakeMessage(status("a", "loaded", 3).to_bytes(), key=b"a", offset=2),
        FakeMessage(None, key=b"b"),  # tombstone: b left the fleet
        FakeMessage(b"{broken", key=b"c"),  # skipped, logged
    ])
    fleet = read_fleet(s)
    assert fleet == {"a": status("a", "loaded", 3)}
    assert asked == [(s.topics.scorer_status, "fleet")]


def test_fleet_of_an_unreachable_broker_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*_args: Any, **_kwargs: Any) -> Any:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    monkeypatch.setattr(topic_reader, "read_topic", unreachable)
    assert read_fleet(settings()) == {}


def test_history_is_every_event_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    late = ModelUpdateEvent.new(type="reload", model_name="m", source="t", event_id="b", issued_at=20)
    early = ModelUpdateEvent.new(type="promoted", model_name="other", version="1", source="t", event_id="a",
                                 issued_at=10)
    tie = ModelUpdateEvent.new(type="rollback", model_name="m", source="t", event_id="a", issued_at=20)
    s = settings()
    asked = serve(monkeypatch, [FakeMessage(late.to_bytes()), FakeMessage(b""), FakeMessage(early.to_bytes()),
                                FakeMessage(tie.to_bytes())])
    assert read_model_updates(s) == [early, tie, late]
    assert asked == [(s.topics.model_updates, "history")]
