"""PROCESSING_GUARANTEE=at_least_once against the real broker: outputs are produced without waiting per batch,
offsets are committed once outputs are acknowledged, and a clean stop in mid-stream loses and repeats nothing."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumer.service import ScorerService
from consumer.settings import Settings
from tests.helpers import consume_all, keys_of, produce_records, wait_for

pytestmark = pytest.mark.integration


def committed_total(settings: Settings, partitions: int = 3) -> int:
    consumer = Consumer({**settings.kafka.client_config(), "group.id": settings.scorer.group_id})
    try:
        offsets = consumer.committed([TopicPartition(settings.topics.records, p) for p in range(partitions)],
                                     timeout=10)
    finally:
        consumer.close()
    return sum(max(0, tp.offset) for tp in offsets)


def test_at_least_once_stop_and_restart_mid_stream_gives_one_output_per_input(scorer_settings: Settings) -> None:
    settings = scorer_settings.replace(**{"scorer.processing_guarantee": "at_least_once",
                                          "scorer.batch_max_records": 50})
    produced = produce_records(settings, count=3000, bad_every=25)
    total = len(produced.good_keys) + len(produced.bad_keys)

    first = ScorerService(settings)
    first.start()
    try:
        assert wait_for(lambda: first.state.counts["consumed"] >= 600 or not first.running, 60), first.state.counts
    finally:
        first.stop()  # in mid-stream: flushes, commits what is acknowledged
    assert first.state.fatal_error is None
    stopped_at = committed_total(settings)
    assert 600 <= stopped_at < total, stopped_at
    assert stopped_at == first.state.counts["consumed"]  # everything it scored was acknowledged and committed

    second = ScorerService(settings)
    second.start()
    try:
        assert wait_for(lambda: committed_total(settings) >= total or not second.running, 60), \
            (committed_total(settings), second.state.counts)
        assert second.state.fatal_error is None
    finally:
        second.stop()
    assert committed_total(settings) == total

    bootstrap = settings.kafka.bootstrap_servers
    predictions = consume_all(bootstrap, settings.topics.predictions, expect=len(produced.good_keys))
    dead = consume_all(bootstrap, settings.topics.dead_letter, expect=len(produced.bad_keys))
    outputs = Counter(keys_of(predictions)) + Counter(keys_of(dead))
    assert set(keys_of(predictions)) == set(produced.good_keys) and set(keys_of(dead)) == set(produced.bad_keys)
    assert set(outputs.values()) == {1}, [key for key, n in outputs.items() if n > 1][:5]
