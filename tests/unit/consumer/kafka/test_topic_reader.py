"""consumer.kafka.topic_reader without a broker: the fleet view and the history built from a topic's messages."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.kafka import topic_reader
from consumer.kafka.topic_reader import FLEET_STATES, fleet_view, read_fleet, read_model_updates
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


def test_fleet_view_marks_an_instance_stale_by_the_age_of_its_last_sign_of_life() -> None:
    """Issue 12, item 6: a killed instance (no tombstone, no more heartbeats) turns ``stale``; a live one whose
    result is old but whose heartbeat is fresh stays ``serving``; a fatal stop says ``stopped``."""
    now = 1_000_000
    statuses = {
        "fresh": status("fresh", "loaded", now - 5_000),
        "beating": dataclasses.replace(status("beating", "started", now - 600_000), heartbeat_at=now - 20_000),
        "killed": dataclasses.replace(status("killed", "loaded", now - 600_000), heartbeat_at=now - 91_000),
        "old-no-heartbeat": status("old-no-heartbeat", "started", now - 90_001),
        "crashed": status("crashed", "stopped", now - 600_000),
        "clock-ahead": status("clock-ahead", "loaded", now + 3_000),
    }
    view = fleet_view(statuses, now_ms=now, stale_after=90.0)
    assert [m.status.instance_id for m in view] == sorted(statuses)
    states = {m.status.instance_id: m.state for m in view}
    assert states == {"fresh": "serving", "beating": "serving", "killed": "stale", "old-no-heartbeat": "stale",
                      "crashed": "stopped", "clock-ahead": "serving"}
    by_id = {m.status.instance_id: m for m in view}
    assert (by_id["killed"].last_seen_at, by_id["killed"].age_seconds) == (now - 91_000, 91.0)
    assert by_id["clock-ahead"].age_seconds == 0.0
    body = by_id["beating"].as_dict()
    assert body["state"] == "serving" and body["age_seconds"] == 20.0 and body["last_seen_at"] == now - 20_000
    assert {k: body[k] for k in ScorerStatus.__dataclass_fields__} == statuses["beating"].as_dict()
    # The age decides: the same statuses 75 s later.
    later = {m.status.instance_id: m.state for m in fleet_view(statuses, now_ms=now + 75_000, stale_after=90.0)}
    assert later["beating"] == "stale" and later["fresh"] == "serving"
    assert set(FLEET_STATES) == {"serving", "stale", "stopped"}


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
