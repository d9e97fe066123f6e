"""consumer.kafka.status without a broker: the ScorerStatus each publish sends, and its failures."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.kafka import status as status_module
from consumer.kafka.status import StatusPublisher
from schemas.control import ScorerStatus
from tests.unit.consumer.kafka.control_fakes import FakeProducer, settings


def test_publish_sends_a_scorer_status_keyed_by_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    monkeypatch.setattr(status_module, "control_producer", lambda _s, _t: producer)
    s = settings()
    publisher = StatusPublisher(s)
    sent = publisher.publish("failed", model_version="3", event_id="e1", detail="x" * 5000, load_seconds=2)
    assert isinstance(sent, ScorerStatus) and publisher.last == sent
    assert (sent.instance_id, sent.model_name, sent.result, sent.event_id) == ("i1", "m", "failed", "e1")
    assert sent.detail == "x" * 1000 and sent.load_seconds == 2.0 and isinstance(sent.load_seconds, float)
    [(topic, key, value)] = producer.sent
    assert (topic, key) == (s.topics.scorer_status, b"i1")
    assert ScorerStatus.from_bytes(value) == sent


def test_a_status_the_broker_does_not_take_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status_module, "control_producer", lambda _s, _t: FakeProducer(unacknowledged=True))
    publisher = StatusPublisher(settings(), timeout=0.1)
    assert publisher.publish("loaded", model_version="2") is None
    assert publisher.last is None


def test_stop_publishes_the_final_status(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    monkeypatch.setattr(status_module, "control_producer", lambda _s, _t: producer)
    publisher = StatusPublisher(settings())
    fields: dict[str, Any] = {"model_version": "2", "model_name": "m", "detail": "clean stop"}
    publisher.final_status = lambda: fields
    publisher.stop()
    assert publisher.last is not None and (publisher.last.result, publisher.last.detail) == ("stopped", "clean stop")
    assert len(producer.sent) == 1
