"""consumer.kafka.status without a broker: the ScorerStatus each publish sends, and its failures."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from consumer.kafka import status as status_module
from consumer.kafka.status import StatusHeartbeat, StatusPublisher
from consumer.workers import Worker
from schemas.control import ScorerStatus
from tests.helpers import wait_for
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


def test_a_fatal_stop_leaves_its_stopped_status_in_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    monkeypatch.setattr(status_module, "control_producer", lambda _s, _t: producer)
    publisher = StatusPublisher(settings())
    fields: dict[str, Any] = {"model_version": "2", "model_name": "m", "detail": "stopped after a fatal error: x"}
    publisher.final_status = lambda: fields
    publisher.stop()
    assert publisher.last is not None and publisher.last.result == "stopped"
    assert publisher.last.detail == "stopped after a fatal error: x"
    [(_, key, value)] = producer.sent
    assert key == b"i1" and value is not None and ScorerStatus.from_bytes(value) == publisher.last


def test_a_clean_stop_removes_the_instance_with_a_tombstone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12, item 6: a clean stop leaves the compacted fleet view (key = instance id, value None)."""
    producer = FakeProducer()
    monkeypatch.setattr(status_module, "control_producer", lambda _s, _t: producer)
    s = settings()
    publisher = StatusPublisher(s)
    publisher.publish("started", model_version="1")
    publisher.final_status = lambda: None  # the service's answer after a clean stop: nothing to keep
    publisher.stop()
    assert len(producer.sent) == 2, producer.sent
    assert producer.sent[-1] == (s.topics.scorer_status, b"i1", None)
    # Nothing after the tombstone brings the instance back (a late reload result, a heartbeat).
    assert publisher.publish("loaded", model_version="2") is None
    assert publisher.heartbeat() is None
    assert len(producer.sent) == 2


def test_a_publisher_without_final_status_also_leaves_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    monkeypatch.setattr(status_module, "control_producer", lambda _s, _t: producer)
    StatusPublisher(settings()).stop()
    assert [value for _, _, value in producer.sent] == [None]


def test_a_heartbeat_repeats_the_latest_status_with_a_fresh_time(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    monkeypatch.setattr(status_module, "control_producer", lambda _s, _t: producer)
    times = iter([1_000, 31_000, 61_000])
    publisher = StatusPublisher(settings(), clock=lambda: next(times))
    assert publisher.heartbeat() is None  # nothing published yet: nothing to repeat
    sent = publisher.publish("loaded", model_version="3", event_id="e1", load_seconds=1.5)
    assert sent is not None and (sent.at, sent.heartbeat_at) == (1_000, None)
    beat = publisher.heartbeat()
    # The result, its event and its time stay as they were: only the sign of life moves.
    assert beat == dataclasses.replace(sent, heartbeat_at=31_000) and publisher.last == beat
    assert beat.last_seen_at == 31_000
    again = publisher.heartbeat()
    assert again is not None and (again.at, again.heartbeat_at, again.event_id) == (1_000, 61_000, "e1")
    assert [ScorerStatus.from_bytes(v or b"") for _, _, v in producer.sent] == [sent, beat, again]


def test_a_heartbeat_delivers_a_status_the_broker_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer(unacknowledged=True)
    monkeypatch.setattr(status_module, "control_producer", lambda _s, _t: producer)
    publisher = StatusPublisher(settings(), timeout=0.1)
    assert publisher.publish("started", model_version="1") is None  # broker away at start-up
    producer.unacknowledged = False  # ... and back
    beat = publisher.heartbeat()
    assert beat is not None and (beat.result, beat.model_version) == ("started", "1")
    assert ScorerStatus.from_bytes(producer.sent[-1][2] or b"") == beat


def test_the_heartbeat_worker_beats_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    monkeypatch.setattr(status_module, "control_producer", lambda _s, _t: producer)
    publisher = StatusPublisher(settings())
    publisher.publish("started", model_version="1")
    heartbeat = StatusHeartbeat(publisher, interval=0.01).start()
    assert heartbeat.name == "status-heartbeat" and isinstance(heartbeat, Worker)
    assert wait_for(lambda: len(producer.sent) >= 4, 10), producer.sent
    heartbeat.stop()
    assert not heartbeat.alive
    beats = [ScorerStatus.from_bytes(v or b"") for _, _, v in producer.sent[1:]]
    assert all(b.result == "started" and b.heartbeat_at is not None for b in beats)
