"""consumer.kafka.control without a broker: what the publishers send and what the listener hands on."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from consumer.errors import ControlPublishError
from consumer.kafka import control
from consumer.kafka.control import ControlListener, ModelUpdatePublisher, publish_event, publish_model_update
from schemas.control import ModelUpdateEvent
from tests.unit.consumer.kafka.control_fakes import FakeConsumer, FakeMessage, FakeProducer, settings


@pytest.fixture
def producers(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    made: list[FakeProducer] = []

    def make(_settings: Any, _timeout: float) -> FakeProducer:
        made.append(FakeProducer())
        return made[-1]

    monkeypatch.setattr(control, "control_producer", make)
    return made


def test_publish_returns_the_event_it_sent_keyed_by_model_name(producers: list[FakeProducer]) -> None:
    s = settings()
    event = publish_model_update(s, type="promoted", model_name="m", version="4", alias="champion", source="test")
    assert isinstance(event, ModelUpdateEvent)
    assert (event.type, event.model_name, event.version, event.alias, event.source) == (
        "promoted", "m", "4", "champion", "test")
    [(topic, key, value)] = producers[0].sent
    assert (topic, key) == (s.topics.model_updates, b"m")
    assert ModelUpdateEvent.from_bytes(value) == event


def test_publish_event_sends_it_as_given(producers: list[FakeProducer]) -> None:
    event = ModelUpdateEvent.new(type="rollback", model_name="m", source="test", event_id="again", issued_at=7)
    publish_event(settings(), event)
    assert producers[0].sent[0][2] == event.to_bytes()


def test_publish_of_an_unknown_type_is_a_value_error(producers: list[FakeProducer]) -> None:
    with pytest.raises(ValueError):
        publish_model_update(settings(), type="deleted", model_name="m", source="test")
    assert producers == []  # refused before any producer was made


def test_publisher_keeps_its_producer_and_drops_it_when_a_message_is_not_acknowledged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made = [FakeProducer(unacknowledged=True), FakeProducer()]
    monkeypatch.setattr(control, "control_producer", lambda _s, _t: made.pop(0))
    publisher = ModelUpdatePublisher(settings(), timeout=0.1)
    with pytest.raises(ControlPublishError, match="not acknowledged"):
        publisher.publish(type="reload", model_name="m", source="test")
    first = publisher.publish(type="reload", model_name="m", source="test")  # a fresh producer
    second = publisher.publish(type="reload", model_name="m", source="test")  # the same one
    assert made == [] and first.event_id != second.event_id
    publisher.close()


def event_bytes(model_name: str = "m", event_id: str = "e1") -> bytes:
    return ModelUpdateEvent.new(type="promoted", model_name=model_name, version="2", alias="champion",
                                source="test", event_id=event_id).to_bytes()


def test_listener_hands_its_models_events_on_as_dataclasses(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings()
    consumer = FakeConsumer([
        FakeMessage(b"not json"),  # malformed: logged and skipped
        FakeMessage(event_bytes(model_name="other")),  # another model's event: not ours
        FakeMessage(event_bytes(event_id="boom")),  # the callback raises: logged, the listener goes on
        FakeMessage(event_bytes(event_id="e2")),
    ])
    monkeypatch.setattr(control, "Consumer", lambda _config: consumer)
    received: list[ModelUpdateEvent] = []
    done = threading.Event()

    def on_event(event: ModelUpdateEvent) -> None:
        received.append(event)
        if event.event_id == "boom":
            raise RuntimeError("handler bug")
        done.set()

    start = [TopicPartition(s.topics.model_updates, 0, 5)]
    listener = ControlListener(s, on_event, start_offsets=start).start()
    try:
        assert done.wait(5) and listener.assigned.is_set()
    finally:
        listener.stop()
    assert [e.event_id for e in received] == ["boom", "e2"]
    assert all(isinstance(e, ModelUpdateEvent) and e.model_name == "m" for e in received)
    assert listener.events_seen == 2
    assert [(tp.partition, tp.offset) for tp in consumer.assignment] == [(0, 5)]
    assert consumer.closed.wait(5) and not listener.alive


def test_listener_stops_while_waiting_for_the_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = threading.Event()

    class NoTopic(FakeConsumer):
        def list_topics(self, topic: str, timeout: float) -> Any:
            asked.set()
            return type("Metadata", (), {"topics": {}})()

    consumer = NoTopic([])
    monkeypatch.setattr(control, "Consumer", lambda _config: consumer)
    listener = ControlListener(settings(), lambda _event: None).start()
    assert asked.wait(5)  # the listener is waiting for the topic to appear
    listener.stop(5)
    assert not listener.alive and not listener.assigned.is_set() and consumer.closed.is_set()
