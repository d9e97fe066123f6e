"""consumer.kafka.replay_io.RangeReader on a fake consumer: each partition read from its position to its end and
no further, whether the end is a record, a record past it, or the end of the partition (markers, aborted
records); an aborted batch read again from the positions given."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from config.settings import load_settings
from consumer.kafka.replay_io import RangeReader, ReplayKafkaError

TOPIC = "records"


class FakeMessage:
    def __init__(self, partition: int, offset: int, error: KafkaError | None = None) -> None:
        self._partition, self._offset, self._error = partition, offset, error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return TOPIC

    def key(self) -> bytes:
        return f"k{self._partition}-{self._offset}".encode()

    def value(self) -> bytes:
        return b"{}"

    def timestamp(self) -> tuple[int, int]:
        return 1, 1000 + self._offset

    def headers(self) -> None:
        return None


def eof(partition: int, offset: int) -> FakeMessage:
    return FakeMessage(partition, offset, KafkaError(KafkaError._PARTITION_EOF))


class FakeConsumer:
    """Hands out scripted consume() answers; records assign/pause."""

    def __init__(self, *answers: list[FakeMessage]) -> None:
        self.answers = list(answers)
        self.assigned: list[list[tuple[int, int]]] = []
        self.paused: list[int] = []

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        return self.answers.pop(0) if self.answers else []

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned.append([(tp.partition, tp.offset) for tp in partitions])

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused += [tp.partition for tp in partitions]

    def consumer_group_metadata(self) -> Any:
        return object()


def reader(consumer: FakeConsumer) -> RangeReader:
    settings = load_settings({}, env={}, config_path=None)
    return RangeReader(settings, TOPIC, "housing-replay.out", consumer=consumer)  # type: ignore[arg-type]


def test_reads_to_each_end_and_drops_what_lies_past_it() -> None:
    consumer = FakeConsumer([FakeMessage(0, 5), FakeMessage(1, 0), FakeMessage(0, 6)],
                            [FakeMessage(0, 7), FakeMessage(0, 8), FakeMessage(1, 1)])
    r = reader(consumer)
    r.start({0: 5, 1: 0}, {0: 8, 1: 10})
    assert consumer.assigned == [[(0, 5), (1, 0)]]
    first = r.next_batch(100, 0.1)
    assert [(m.partition, m.offset) for m in first] == [(0, 5), (1, 0), (0, 6)]
    assert first[0].key == b"k0-5" and first[0].timestamp_ms == 1005 and first[0].topic == TOPIC
    assert r.positions == {0: 7, 1: 1} and not r.finished
    second = r.next_batch(100, 0.1)
    assert [(m.partition, m.offset) for m in second] == [(0, 7), (1, 1)]  # offset 8 is the end: not read
    assert r.positions == {0: 8, 1: 2} and consumer.paused == [0] and not r.finished


def test_the_end_of_a_partition_at_its_range_end_finishes_it_and_before_it_does_not() -> None:
    # read_committed skips transaction markers and aborted records: the last offsets may never come as records.
    consumer = FakeConsumer([FakeMessage(0, 3), eof(0, 4)], [eof(0, 6)], [FakeMessage(1, 0)])
    r = reader(consumer)
    r.start({0: 3, 1: 0}, {0: 6, 1: 1})
    assert len(r.next_batch(100, 0.1)) == 1 and r.positions[0] == 4 and not r.finished
    assert r.next_batch(100, 0.1) == [] and r.positions[0] == 6  # the end: committed as such
    assert len(r.next_batch(100, 0.1)) == 1 and r.finished and consumer.paused == [0, 1]


def test_partitions_with_nothing_left_are_not_assigned() -> None:
    consumer = FakeConsumer()
    r = reader(consumer)
    r.start({0: 8, 1: 4}, {0: 8, 1: 9})
    assert consumer.assigned == [[(1, 4)]] and not r.finished
    done = reader(FakeConsumer())
    done.start({0: 8}, {0: 8})
    assert done.finished and done.next_batch(100, 0.1) == []


def test_rewind_reads_again_from_the_positions_given() -> None:
    consumer = FakeConsumer([FakeMessage(0, 0), FakeMessage(0, 1), FakeMessage(1, 0)])
    r = reader(consumer)
    r.start({0: 0, 1: 0}, {0: 2, 1: 5})
    r.next_batch(100, 0.1)
    assert r.positions == {0: 2, 1: 1}
    r.rewind({0: 0, 1: 0})
    assert consumer.assigned[-1] == [(0, 0), (1, 0)] and r.positions == {0: 0, 1: 0} and not r.finished


def test_a_consumer_error_that_is_not_the_end_of_a_partition_stops_the_reader() -> None:
    consumer = FakeConsumer([FakeMessage(0, 0, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))])
    r = reader(consumer)
    r.start({0: 0}, {0: 2})
    with pytest.raises(ReplayKafkaError, match=r"records\[0\]"):
        r.next_batch(100, 0.1)
