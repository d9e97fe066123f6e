"""Rebalances that do not stop the fleet (issue 16, part 1), on the real broker: two in-process scorers on a
6-partition topic under a steady stream, exactly-once, with the consumer group protocol (KIP-848). Scorer A
holds all six; B joins (scale-out) and later stops (scale-in). Every input has exactly one output (read
read_committed up to the high watermarks), the broker says the group is a consumer-protocol group, and A never
gave up a partition it kept: its assignment only shrinks while B joins and only grows once B has left.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupType, Producer
from confluent_kafka.admin import AdminClient

from config.settings import Settings
from consumer.service import ScorerService
from tests.conftest import RegisteredModel
from tests.helpers import committed_total, housing_rows, keys_of, read_to_end, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 6
RECORDS = 9_000
RATE = 600
"""Records/s: the stream lasts 15 s, long enough for B to join, score and leave while records keep coming."""


class SteadyStream:
    """Produces RECORDS keyed ``<prefix>-<i>`` at about RATE per second on its own thread."""

    def __init__(self, settings: Settings, prefix: str) -> None:
        self.settings = settings
        self.keys = [f"{prefix}-{i}" for i in range(RECORDS)]
        self.rows = housing_rows(RECORDS)
        self.sent = 0
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, name="steady-stream", daemon=True)

    def start(self) -> SteadyStream:
        self._thread.start()
        return self

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self.failures.append(str(error))

    def _run(self) -> None:
        producer = Producer({**self.settings.kafka.client_config(), "linger.ms": 5})
        started = time.monotonic()
        for i, (key, row) in enumerate(zip(self.keys, self.rows, strict=True)):
            if i % 30 == 0:
                ahead = started + i / RATE - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the stream, not waiting for the scorers
                producer.poll(0)
            producer.produce(self.settings.topics.records, json.dumps({**row, "record_id": key}).encode(),
                             key.encode(), on_delivery=self._on_delivery)
            self.sent = i + 1
        if producer.flush(60):
            self.failures.append("records left undelivered")

    def join(self) -> None:
        self._thread.join(120)
        assert not self._thread.is_alive() and not self.failures, (self.sent, self.failures[:3])


class AssignmentHistory:
    """Every assignment a scorer's loop reported (``ScorerState.set_assignment``), in order."""

    def __init__(self, service: ScorerService) -> None:
        self.changes: list[frozenset[int]] = []
        state = service.state
        report = state.set_assignment

        def recording(partitions: frozenset[tuple[str, int]]) -> None:
            self.changes.append(frozenset(partition for _, partition in partitions))
            report(partitions)

        state.set_assignment = recording  # type: ignore[method-assign]

    @property
    def current(self) -> frozenset[int]:
        return self.changes[-1] if self.changes else frozenset()


def group_type(settings: Settings) -> ConsumerGroupType:
    admin = AdminClient(settings.kafka.client_config())
    future = admin.describe_consumer_groups([settings.scorer.group_id], request_timeout=10)[settings.scorer.group_id]
    return future.result(timeout=15).type


def test_scale_out_and_in_with_the_consumer_protocol_keeps_partitions_and_scores_each_record_once(
        settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
        registered_model: RegisteredModel, group_id: str) -> None:
    topics = {
        "records": topic_factory(PARTITIONS, "records"),
        "predictions": topic_factory(PARTITIONS, "predictions"),
        "dead_letter": topic_factory(PARTITIONS, "dlq"),
        "model_updates": topic_factory(1, "updates"),
        "scorer_status": topic_factory(1, "status", {"cleanup.policy": "compact"}),
    }

    def scorer_settings(instance: str) -> Settings:
        return settings_factory(topics, **{**registered_model.settings_overrides(), "scorer.group_id": group_id,
                                           "scorer.instance_id": instance, "scorer.batch_max_wait_ms": 20,
                                           "kafka.group_protocol": "consumer", "admin.enabled": False})

    a = ScorerService(scorer_settings("a"))
    b = ScorerService(scorer_settings("b"))
    a_history, b_history = AssignmentHistory(a), AssignmentHistory(b)
    stream = SteadyStream(a.settings, "rb")
    a.start()
    try:
        assert wait_for(lambda: len(a_history.current) == PARTITIONS or not a.running, 60), a_history.changes
        assert a.loop is not None and a.loop.group_protocol == "consumer"
        assert group_type(a.settings) == ConsumerGroupType.CONSUMER  # the broker's word: KIP-848 group
        stream.start()
        assert wait_for(lambda: a.state.counts["consumed"] >= 1000 or not a.running, 60), a.state.counts
        before_out = a_history.current

        # Scale out: B joins while records keep coming.
        b.start()
        assert wait_for(lambda: (b_history.current and len(a_history.current | b_history.current) == PARTITIONS
                                 and not a_history.current & b_history.current) or not b.running, 60), \
            (a_history.changes, b_history.changes)
        scale_out = a_history.changes[a_history.changes.index(before_out):]
        kept = a_history.current
        assert kept and b_history.current, "the partitions were not shared"
        # A gave up only what B took, in steps that only shrink: no partition it kept was revoked meanwhile.
        assert all(later <= earlier for earlier, later in pairwise(scale_out)), scale_out
        assert all(kept <= step for step in scale_out), scale_out
        b_consumed = b.state.counts["consumed"]
        assert wait_for(lambda: b.state.counts["consumed"] > b_consumed + 200 or not b.running, 60), b.state.counts
        assert stream.sent < RECORDS, "the stream ended before the scale-in: make it longer"

        # Scale in: B stops (it leaves the group at once); A takes its partitions back, keeping its own.
        before_in = len(a_history.changes) - 1
        b.stop()
        assert wait_for(lambda: len(a_history.current) == PARTITIONS or not a.running, 60), a_history.changes
        scale_in = a_history.changes[before_in:]
        assert all(earlier <= later for earlier, later in pairwise(scale_in)), scale_in

        stream.join()
        assert wait_for(lambda: committed_total(a.settings.kafka.bootstrap_servers, group_id, topics["records"],
                                                PARTITIONS) >= RECORDS or not a.running, 90), a.state.counts
        assert a.state.fatal_error is None and b.state.fatal_error is None
    finally:
        b.stop()
        a.stop()

    # Exactly one output per input, as a downstream read_committed reader sees it (up to the high watermarks).
    predictions = read_to_end(a.settings.kafka.bootstrap_servers, topics["predictions"],
                              until=lambda out: len(out) >= RECORDS, timeout=60)
    dead = read_to_end(a.settings.kafka.bootstrap_servers, topics["dead_letter"])
    counts = Counter(keys_of(predictions))
    duplicates = {key: n for key, n in counts.items() if n > 1}
    assert not dead, f"{len(dead)} dead letters for good records"
    assert not duplicates, f"{len(duplicates)} keys scored twice, e.g. {list(duplicates.items())[:5]}"
    assert set(counts) == set(stream.keys), f"{len(set(stream.keys) - set(counts))} records never scored"
