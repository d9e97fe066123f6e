"""consumer.kafka.oversize without a broker: which refused predictions count as too large by their own size, and
``run()`` on fake clients whose broker refuses one prediction as too large (issue 12, item 8): the batch is
aborted or rewound once, its other records are produced once, and the refused input is dead-lettered."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchResult, Incoming, Rejected, Scored
from consumer.kafka import loop, producer
from consumer.kafka.loop import ScoringLoop
from consumer.kafka.oversize import RefusedOutputs
from consumer.state import ScorerState
from schemas import topics
from tests.helpers import housing_rows
from tests.unit.consumer.kafka.test_loop import settings

TOO_LARGE = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")


class Delivered:
    """What librdkafka hands a delivery callback."""

    def __init__(self, topic: str, key: bytes | None, value: bytes, partition: int = 0) -> None:
        self._topic, self._key, self._value, self._partition = topic, key, value, partition

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return [("model_name", b"m")]

    def partition(self) -> int:
        return self._partition


def scored(offset: int, key: bytes, value: bytes | None = None) -> Scored:
    source = Incoming(key, b"{}", "in", 0, offset)
    return Scored(key, value if value is not None else f"prediction {offset}".encode(), [], source, "id", 1.0)


def result_of(*outputs: Scored) -> BatchResult:
    return BatchResult(list(outputs), [], None, np.ones(len(outputs)))


class Limits:
    """The predictions topic's max.message.bytes as the broker would say it; counts the questions."""

    def __init__(self, limit: int | None) -> None:
        self.limit, self.asked = limit, 0

    def __call__(self, topic: str) -> int | None:
        self.asked += 1
        return self.limit


def test_a_refused_prediction_larger_than_a_producer_batch_is_remembered_by_its_input() -> None:
    limits = Limits(1_048_588)
    refused = RefusedOutputs("out", batch_bytes=1_000_000, topic_limit=limits)
    big, small = scored(7, b"k" * 1_100_000), scored(8, b"a")
    on_delivery = refused.watch(result_of(small, big))
    on_delivery(None, Delivered("out", small.key, small.value))
    on_delivery(TOO_LARGE, Delivered("out", big.key, big.value))
    positions = refused.positions()
    assert list(positions) == [("in", 0, 7)]
    assert "1,100," in positions[("in", 0, 7)] and "refused" in positions[("in", 0, 7)]
    assert limits.asked == 0  # larger than a producer batch: it went alone, no need to ask the broker
    assert refused.positions() is positions  # remembered until scored again


def test_small_predictions_refused_together_are_a_topic_setting_to_fix_not_bad_records(
        caplog: pytest.LogCaptureFixture) -> None:
    limits = Limits(500_000)
    refused = RefusedOutputs("out", batch_bytes=1_000_000, topic_limit=limits)
    outputs = [scored(offset, b"k", b"v" * 200_000) for offset in range(3)]
    on_delivery = refused.watch(result_of(*outputs))
    for output in outputs:  # one produce request of 600 KB refused whole
        on_delivery(TOO_LARGE, Delivered("out", output.key, output.value))
    with caplog.at_level(logging.ERROR):
        assert refused.positions() == {}
    assert limits.asked == 1
    assert "refused 3 predictions as too large although each fits out's max.message.bytes" in caplog.text


def test_a_refused_prediction_over_the_topic_limit_but_under_a_batch_is_the_record_s_own() -> None:
    limits = Limits(500_000)
    refused = RefusedOutputs("out", batch_bytes=1_000_000, topic_limit=limits)
    output = scored(3, b"k" * 600_000)
    refused.watch(result_of(output))(TOO_LARGE, Delivered("out", output.key, output.value))
    assert list(refused.positions()) == [("in", 0, 3)] and "500,000" in refused.positions()[("in", 0, 3)]


def test_when_the_broker_will_not_say_its_limit_a_refused_prediction_is_dead_lettered_not_retried_for_ever() -> None:
    refused = RefusedOutputs("out", batch_bytes=1_000_000, topic_limit=Limits(None))
    output = scored(3, b"k" * 600_000)
    refused.watch(result_of(output))(TOO_LARGE, Delivered("out", output.key, output.value))
    assert list(refused.positions()) == [("in", 0, 3)]


def test_other_errors_dead_letters_and_successes_are_not_refusals() -> None:
    limits = Limits(1_048_588)
    refused = RefusedOutputs("out", batch_bytes=1_000_000, topic_limit=limits)
    output = scored(1, b"k" * 1_100_000)
    dead = Rejected(b"k", b"v", [], output.source, "malformed_json", "decode", "m")
    on_delivery = refused.watch(BatchResult([output], [dead], None, np.ones(1)))
    on_delivery(None, Delivered("out", output.key, output.value))
    on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"), Delivered("out", output.key, output.value))
    on_delivery(TOO_LARGE, Delivered("dlq", dead.key, dead.value))  # a dead letter: the DLQ's size is config
    on_delivery(TOO_LARGE, Delivered("out", b"k", b"not one of this batch's"))
    assert refused.positions() == {} and limits.asked == 0


# --- run() on fakes: one prediction the broker refuses ----------------------------------------------------------

HUGE_KEY = b"h" * 1_100_000


class Record:
    """A good JSON housing record at t[0]; the one at offset 2 has a 1.1 MB key (fits the producer, not the topic)."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return HUGE_KEY if self._offset == 2 else f"k{self._offset}".encode()

    def value(self) -> bytes:
        return json.dumps(housing_rows(1, self._offset)[0]).encode()

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def headers(self) -> None:
        return None


class LogConsumer:
    """t[0] holds offsets 0..4; hands them out in order and can be sought back. At the end it waits (polls give
    nothing) until the loop has rewound once and read to the end again, then revokes t[0] and stops the loop."""

    made: list[LogConsumer] = []
    loop: ScoringLoop | None = None
    END = 5

    def __init__(self, config: dict[str, Any]) -> None:
        self.next_offset = self.committed_offset = 0
        self.assigned: list[TopicPartition] = []
        self.seeks: list[int] = []
        self.idle_polls = 0
        LogConsumer.made.append(self)

    def subscribe(self, topics: list[str], *, on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def poll(self, timeout: float) -> Record | None:
        if not self.assigned:
            self.assigned = [TopicPartition("t", 0)]
            self.on_assign(self, self.assigned)
        if self.next_offset < self.END:
            self.next_offset += 1
            return Record(self.next_offset - 1)
        assert self.loop is not None
        self.idle_polls += 1
        time.sleep(0.001)  # a real poll waits for its timeout: lets the commit on the worker thread finish
        if (self.seeks or self.idle_polls > 5000) and not self.loop.stopping:
            self.on_revoke(self, self.assigned)
            self.assigned = []
            self.loop.stop()
        return None

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        taken = [Record(offset) for offset in range(self.next_offset, min(self.END, self.next_offset + num_messages))]
        self.next_offset += len(taken)
        return taken

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append(tp.offset)
        self.next_offset = tp.offset
        if len(self.seeks) >= 3 and self.loop is not None:  # the same batch failing again and again
            self.loop.stop()

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.committed_offset = offsets[0].offset

    def committed(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.committed_offset) for tp in partitions]

    def consumer_group_metadata(self) -> object:
        return object()

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        """The loop applies an incremental change in the callback; this fake keeps its own assignment."""

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        """As incremental_assign."""

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return partitions  # the loop's wake-up call after a rebalance (its answer is not used)

    def assignment(self) -> list[TopicPartition]:
        return self.assigned

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.next_offset) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (0, self.END)

    def close(self) -> None:
        pass


class RefusingBroker:
    """A producer whose broker takes messages up to 1 MiB: a larger one is refused in its delivery report (served
    at commit, flush or poll, as librdkafka does), and the transaction holding it fails at commit. Keeps what each
    producer got committed (exactly-once) or acknowledged (at-least-once)."""

    made: list[RefusingBroker] = []
    LIMIT = 1_048_588

    def __init__(self, config: dict[str, Any]) -> None:
        self.transactional = "transactional.id" in config
        self.pending: list[tuple[str, bytes | None, bytes, Any, Any]] = []
        self.out: list[tuple[str, bytes | None, bytes, dict[str, bytes]]] = []
        self.refused = False
        RefusingBroker.made.append(self)

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, on_delivery: Any = None) -> None:
        self.pending.append((topic, key, value, on_delivery, dict(headers)))

    def _deliver(self) -> list[tuple[str, bytes | None, bytes, dict[str, bytes]]]:
        delivered = []
        for topic, key, value, on_delivery, headers in self.pending:
            error = TOO_LARGE if len(key or b"") + len(value) > self.LIMIT else None
            self.refused = self.refused or error is not None
            if on_delivery is not None:
                on_delivery(error, Delivered(topic, key, value))
            if error is None:
                delivered.append((topic, key, value, headers))
        self.pending.clear()
        return delivered

    def poll(self, timeout: float) -> int:
        if not self.transactional:
            self.out.extend(self._deliver())
        return 0

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0

    def init_transactions(self, timeout: float) -> None:
        pass

    def begin_transaction(self) -> None:
        self.refused = False

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float) -> None:
        pass

    def commit_transaction(self, timeout: float) -> None:
        delivered = self._deliver()
        if self.refused:
            raise KafkaException(TOO_LARGE)
        self.out.extend(delivered)

    def abort_transaction(self, timeout: float) -> None:
        self.pending.clear()


class ConstantModel:
    def predict(self, frame: Any) -> np.ndarray:
        return np.full(len(frame), 100_000.0)


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_prediction_the_broker_refuses_dead_letters_its_input_and_the_rest_go_out(
        monkeypatch: pytest.MonkeyPatch, guarantee: str) -> None:
    LogConsumer.made.clear()
    RefusingBroker.made.clear()
    monkeypatch.setattr(loop, "Consumer", LogConsumer)
    monkeypatch.setattr(producer, "Producer", RefusingBroker)
    s = settings(**{"scorer.processing_guarantee": guarantee, "scorer.batch_max_records": 10})
    state = ScorerState(s)
    state.models.swap(ModelHandle(model=ConstantModel(), name="m", version="1"))
    scoring = ScoringLoop(s, state)  # the 1.1 MB prediction is over a producer batch: no need to ask the broker
    monkeypatch.setattr(LogConsumer, "loop", scoring)
    scoring.run()
    [consumer] = LogConsumer.made
    out = [record for made in RefusingBroker.made for record in made.out]
    predictions = [key for topic, key, _, _ in out if topic == s.topics.predictions]
    dead = [(key, value, headers[topics.HEADER_DLQ_REASON])
            for topic, key, value, headers in out if topic == s.topics.dead_letter]
    assert consumer.seeks == [0]  # the batch failed once and was scored again
    if guarantee == "exactly_once":  # the aborted transaction's outputs never counted: each record once
        assert predictions == [b"k0", b"k1", b"k3", b"k4"]
        assert len(RefusingBroker.made) == 2  # replaced: librdkafka's next transaction would fail otherwise
    else:  # at-least-once: what was acknowledged before the refusal is produced again
        assert set(predictions) == {b"k0", b"k1", b"k3", b"k4"}
    # The input, whole, keyed by the digest of its key (the key itself would not fit the DLQ either).
    assert dead == [(b"key-sha256:" + hashlib.sha256(HUGE_KEY).hexdigest().encode(), Record(2).value(),
                     b"output_too_large")]
    assert scoring.state.metrics.registry.get_sample_value(
        "housing_scorer_records_dead_lettered_total", {"reason": "output_too_large", "stage": "produce"}) == 1
