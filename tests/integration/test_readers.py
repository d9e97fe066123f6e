"""The test readers themselves (tests.helpers.read_to_end, consume_all) on the real broker: exact to the high
watermarks of transactional topics, never vacuous, loud on errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from tests.helpers import ReadError, consume_all, keys_of, read_to_end

pytestmark = pytest.mark.integration


def transactional(bootstrap: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"reader-test-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    return producer


def test_reads_committed_records_exactly_past_aborted_ones_and_markers(
        kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    producer = transactional(kafka_bootstrap)
    for batch, commit in (("a", True), ("b", False), ("c", True)):
        producer.begin_transaction()
        for i in range(5):
            producer.produce(topic, key=f"{batch}{i}".encode(), value=b"x", partition=i % 3)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    # Every partition ends in a marker, one holds only what the aborted batch left after the committed one.
    assert sorted(keys_of(read_to_end(kafka_bootstrap, topic, timeout=30))) == sorted(
        [f"a{i}" for i in range(5)] + [f"c{i}" for i in range(5)])


def test_an_empty_topic_reads_as_nothing_at_once(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    assert read_to_end(kafka_bootstrap, topic_factory(3), timeout=15) == []


def test_an_open_transaction_holds_the_read_until_it_ends(kafka_bootstrap: str,
                                                          topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(1)
    producer = transactional(kafka_bootstrap)
    producer.begin_transaction()
    producer.produce(topic, key=b"pending", value=b"x")
    producer.flush(10)
    with pytest.raises(ReadError, match="not at the high watermark"):
        read_to_end(kafka_bootstrap, topic, timeout=3)
    producer.commit_transaction(30)
    assert keys_of(read_to_end(kafka_bootstrap, topic, timeout=30)) == ["pending"]


def test_expect_still_returns_what_was_written_beyond_it(kafka_bootstrap: str,
                                                         topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(7):
        producer.produce(topic, key=f"k{i}".encode(), value=b"x", partition=i % 2)
    assert producer.flush(10) == 0
    assert len(consume_all(kafka_bootstrap, topic, expect=5, timeout=30)) == 7


def test_a_topic_that_does_not_exist_fails_the_read(kafka_bootstrap: str) -> None:
    with pytest.raises(ReadError):
        read_to_end(kafka_bootstrap, f"no-such-topic-{uuid.uuid4().hex}", timeout=10)
