"""consumer.kafka.loop without a broker: offsets to commit, client configs, rewinds, failures, error routing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from config.settings import Settings, load_settings
from consumer.core.scoring import BatchResult, Incoming, Rejected
from consumer.errors import BatchFailed, ScorerFatalError
from consumer.kafka import loop
from consumer.kafka.clients import consumer_config, producer_config
from consumer.kafka.loop import ScoringLoop
from consumer.state import ScorerState


def settings(**flat: Any) -> Settings:
    base = {"scorer.group_id": "g", "scorer.instance_id": "i1"}
    return load_settings({**base, **flat}, env={}, config_path=None)


def incoming(partition: int, offset: int, topic: str = "t") -> Incoming:
    return Incoming(b"k", b"{}", topic, partition, offset)


def make_loop(**flat: Any) -> ScoringLoop:
    s = settings(**flat)
    return ScoringLoop(s, ScorerState(s))


def test_next_offsets_are_last_plus_one_per_partition() -> None:
    batch = [incoming(0, 5), incoming(1, 10), incoming(0, 6), incoming(0, 7), incoming(1, 11), incoming(2, 0, "u")]
    offsets = {(tp.topic, tp.partition): tp.offset for tp in loop._next_offsets(batch)}
    assert offsets == {("t", 0): 8, ("t", 1): 12, ("u", 2): 1}


def test_next_offsets_of_an_empty_batch_is_nothing() -> None:
    assert loop._next_offsets([]) == []


def test_a_batch_gathers_until_the_wait_after_the_previous_cut() -> None:
    # Right after a cut: the whole wait. Part-way: the rest of it.
    assert loop.gather_seconds(last_cut=100.0, now=100.0, batch_max_wait_ms=5) == pytest.approx(0.005)
    assert loop.gather_seconds(last_cut=100.0, now=100.002, batch_max_wait_ms=5) == pytest.approx(0.003)
    # The last batch took longer than the wait, or the stream was quiet: records that queued meanwhile go at once.
    assert loop.gather_seconds(last_cut=100.0, now=100.008, batch_max_wait_ms=5) == 0.0
    assert loop.gather_seconds(last_cut=0.0, now=5000.0, batch_max_wait_ms=5) == 0.0
    assert loop.gather_seconds(last_cut=100.0, now=100.0, batch_max_wait_ms=0) == 0.0


def test_describe_and_positions_name_topic_partition_offset() -> None:
    assert loop._describe([TopicPartition("t", 0), TopicPartition("t", 2)]) == "t[0], t[2]"
    assert loop._describe([]) == "nothing"
    assert loop._positions([incoming(1, 42), incoming(0, 3)]) == 'partition="t[1]" offset="42"'


def test_exactly_once_configs_read_committed_manual_commits_stable_transactional_id() -> None:
    s = settings()
    consumer = consumer_config(s)
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False and consumer["enable.auto.offset.store"] is False
    assert consumer["group.id"] == "g"
    producer = producer_config(s)
    assert producer["transactional.id"] == "g-i1"  # stable across restarts: the restart fences its zombie
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    # Whole dead letters up to DLQ_MAX_VALUE_BYTES must fit one produce request.
    assert producer["message.max.bytes"] > s.scorer.dlq_max_value_bytes


def test_at_least_once_has_no_transactional_id() -> None:
    assert "transactional.id" not in producer_config(settings(**{"scorer.processing_guarantee": "at_least_once"}))


class FakeConsumer:
    def __init__(self, assigned: list[tuple[str, int]]) -> None:
        self._assigned = [TopicPartition(t, p) for t, p in assigned]
        self.seeks: list[tuple[str, int, int]] = []

    def assignment(self) -> list[TopicPartition]:
        return self._assigned

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def test_rewind_seeks_each_assigned_partition_to_its_first_offset_in_the_batch() -> None:
    scoring = make_loop()
    fake = FakeConsumer([("t", 0), ("t", 1)])
    scoring._consumer = fake  # type: ignore[assignment]
    scoring._rewind([incoming(0, 5), incoming(1, 9), incoming(0, 6), incoming(2, 1)])
    # Partition 2 was revoked meanwhile: its next owner starts from the committed offset.
    assert sorted(fake.seeks) == [("t", 0, 5), ("t", 1, 9)]


class FakeProducer:
    def __init__(self, full_times: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.full_times = full_times
        self.polls = 0

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                **_: Any) -> None:
        if self.full_times:
            self.full_times -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value, headers))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def test_oversized_dead_letter_is_truncated_and_says_from_what_size() -> None:
    scoring = make_loop(**{"scorer.dlq_max_value_bytes": 10})
    fake = FakeProducer(full_times=2)
    scoring._producer = fake  # type: ignore[assignment]
    source = incoming(0, 1)
    result = BatchResult([], [Rejected(b"k", b"x" * 25, [("dlq.reason", b"too_large")], source, "too_large",
                                       "decode", "big"),
                              Rejected(b"k2", b"small", [], source, "malformed_json", "decode", "bad")],
                         None, np.empty(0))
    scoring._produce_all(result, "pred", "dlq")
    assert fake.polls == 2  # a full local queue is drained, not an error
    (topic, _, value, headers), (_, _, small, small_headers) = fake.sent
    assert topic == "dlq" and value == b"x" * 10 and ("dlq.truncated_from", b"25") in headers
    assert small == b"small" and small_headers == []


def refused() -> BatchFailed:
    try:
        raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
    except KafkaException as exc:
        try:
            raise BatchFailed("refused") from exc
        except BatchFailed as failed:
            return failed


def test_a_batch_the_broker_keeps_refusing_is_fatal_but_transient_failures_are_not() -> None:
    scoring = make_loop()
    scoring.stop()  # the backoff waits on the stop event: returns at once
    batch = [incoming(0, 1)]
    for _ in range(20):
        scoring._after_failure(batch, BatchFailed("timed out"))
    assert scoring._consecutive_failures == 20 and scoring._non_retriable_failures == 0
    for _ in range(loop.POISON_BATCH_ATTEMPTS - 1):
        scoring._after_failure(batch, refused())
    with pytest.raises(ScorerFatalError, match="refused the same batch"):
        scoring._after_failure(batch, refused())


def test_transport_errors_mark_kafka_down_and_fatal_errors_stop_with_a_hint() -> None:
    scoring = make_loop()
    scoring.state.kafka_connected = True
    scoring._on_client_error(KafkaError(KafkaError._TRANSPORT, "broker down"))
    assert scoring.state.kafka_connected is False and scoring.state.kafka_error == "broker down"
    scoring._raise_if_fatal()  # transient: nothing raised
    scoring._on_client_error(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True))
    with pytest.raises(ScorerFatalError, match="SCORER_INSTANCE_ID"):
        scoring._raise_if_fatal()


def test_producer_fatal_errors_other_than_fencing_are_left_to_the_batch_to_recover() -> None:
    scoring = make_loop()
    scoring._on_producer_error(KafkaError(KafkaError.INVALID_TXN_STATE, "txn timed out", fatal=True))
    scoring._raise_if_fatal()  # recovered by a new producer, not fatal
    scoring._on_producer_error(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True))
    with pytest.raises(ScorerFatalError):
        scoring._raise_if_fatal()


class AckingConsumer(FakeConsumer):
    def __init__(self, assigned: list[tuple[str, int]]) -> None:
        super().__init__(assigned)
        self.commits: list[tuple[dict[tuple[str, int], int], bool]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(({(tp.topic, tp.partition): tp.offset for tp in offsets}, asynchronous))


class HoldingProducer:
    """Keeps delivery callbacks until the test acknowledges (or refuses) a batch's outputs."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, on_delivery: Any = None) -> None:
        self.callbacks.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def at_least_once_loop() -> tuple[ScoringLoop, AckingConsumer, HoldingProducer]:
    scoring = make_loop(**{"scorer.processing_guarantee": "at_least_once"})
    consumer, producer = AckingConsumer([("t", 0), ("t", 1)]), HoldingProducer()
    scoring._consumer, scoring._producer = consumer, producer  # type: ignore[assignment]
    return scoring, consumer, producer


def deliver(scoring: ScoringLoop, batch: list[Incoming]) -> None:
    result = BatchResult([], [Rejected(m.key, b"v", [], m, "r", "decode", "m") for m in batch], None, np.empty(0))
    scoring._deliver(batch, result)


def test_at_least_once_commits_only_the_acknowledged_leading_batches_without_waiting() -> None:
    scoring, consumer, producer = at_least_once_loop()
    first, second, third = [incoming(0, 0), incoming(1, 0)], [incoming(0, 1)], [incoming(1, 1), incoming(0, 2)]
    for batch in (first, second, third):
        deliver(scoring, batch)
    assert len(producer.callbacks) == 5 and consumer.commits == []  # produced, nothing waited for
    for callback in producer.callbacks[2:]:  # the later batches are acknowledged first
        callback(None, None)
    scoring._settle()
    assert consumer.commits == [] and len(scoring._in_flight) == 3  # the first batch holds them back
    for callback in producer.callbacks[:2]:
        callback(None, None)
    scoring._settle()
    assert consumer.commits == [({("t", 0): 3, ("t", 1): 2}, True)] and not scoring._in_flight


def test_at_least_once_refused_output_rewinds_to_the_first_unacknowledged_batch() -> None:
    scoring, consumer, producer = at_least_once_loop()
    done, failing, later = [incoming(0, 0)], [incoming(0, 1), incoming(1, 5)], [incoming(1, 6), incoming(0, 2)]
    for batch in (done, failing, later):
        deliver(scoring, batch)
    producer.callbacks[0](None, None)
    producer.callbacks[1](KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"), None)
    for callback in producer.callbacks[2:]:
        callback(None, None)
    with pytest.raises(loop.DeliveryFailed, match="MSG_SIZE_TOO_LARGE") as failed:
        scoring._settle()
    assert failed.value.batch == failing
    assert consumer.commits == [({("t", 0): 1}, True)]  # the batch before the refused one, and nothing after
    assert sorted(consumer.seeks) == [("t", 0, 1), ("t", 1, 5)] and not scoring._in_flight
    scoring.stop()
    for _ in range(loop.POISON_BATCH_ATTEMPTS - 1):
        scoring._after_failure(failed.value.batch, failed.value)
    with pytest.raises(ScorerFatalError, match="refused the same batch"):
        scoring._after_failure(failed.value.batch, failed.value)


def test_at_least_once_revoke_commits_what_is_acknowledged_and_forgets_the_rest() -> None:
    scoring, consumer, producer = at_least_once_loop()
    deliver(scoring, [incoming(0, 0)])
    deliver(scoring, [incoming(1, 0)])
    producer.callbacks[0](None, None)  # the second is never acknowledged (flush timed out)
    scoring._on_revoke(consumer, [TopicPartition("t", 0), TopicPartition("t", 1)])  # type: ignore[arg-type]
    assert consumer.commits == [({("t", 0): 1}, False)] and not scoring._in_flight


class TransactionalFake:
    """A transactional producer whose commits fail on demand; every call is recorded in order."""

    def __init__(self, failing_commits: int = 0) -> None:
        self.calls: list[str] = []
        self.failing_commits = failing_commits

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, **_: Any) -> None:
        self.calls.append(f"produce {value.decode()}")

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float) -> None:
        self.calls.append("send_offsets " + ",".join(f"{tp.partition}:{tp.offset}" for tp in offsets))

    def commit_transaction(self, timeout: float) -> None:
        if self.failing_commits:
            self.failing_commits -= 1
            raise KafkaException(KafkaError(KafkaError.INVALID_TXN_STATE, "commit refused"))
        self.calls.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


class GroupConsumer(FakeConsumer):
    def consumer_group_metadata(self) -> object:
        return object()


def transactional_loop(failing_commits: int) -> tuple[ScoringLoop, GroupConsumer, TransactionalFake]:
    scoring = make_loop()
    consumer, producer = GroupConsumer([("t", 0), ("t", 1)]), TransactionalFake(failing_commits)
    scoring._consumer, scoring._producer = consumer, producer  # type: ignore[assignment]
    return scoring, consumer, producer


def outputs(batch: list[Incoming]) -> BatchResult:
    return BatchResult([], [Rejected(m.key, f"{m.partition}/{m.offset}".encode(), [], m, "r", "decode", "m")
                            for m in batch], None, np.empty(0))


def test_exactly_once_commits_in_the_background_one_transaction_at_a_time() -> None:
    scoring, _, producer = transactional_loop(failing_commits=0)
    first, second = [incoming(0, 0), incoming(1, 0)], [incoming(0, 1)]
    scoring._deliver_in_transaction(first, outputs(first), None, 0.0)  # type: ignore[arg-type]
    assert scoring._pending is not None and scoring._pending.outcome.wait(5)
    scoring._deliver_in_transaction(second, outputs(second), None, 0.0)  # type: ignore[arg-type]
    scoring._finish_pending()
    assert producer.calls == ["begin", "produce 0/0", "produce 1/0", "send_offsets 0:1,1:1", "commit",
                              "begin", "produce 0/1", "send_offsets 0:2", "commit"]
    assert scoring.state.counts["consumed"] == 3


def test_exactly_once_failed_commit_rewinds_its_batch_and_the_next_one_scored_meanwhile() -> None:
    scoring, consumer, producer = transactional_loop(failing_commits=1)
    first, second = [incoming(0, 4), incoming(0, 5)], [incoming(1, 9), incoming(0, 6)]
    scoring._deliver_in_transaction(first, outputs(first), None, 0.0)  # type: ignore[arg-type]
    with pytest.raises(BatchFailed, match="commit refused"):
        scoring._deliver_in_transaction(second, outputs(second), None, 0.0)  # type: ignore[arg-type]
    # The second batch was never produced; both go back to their first offsets.
    assert producer.calls == ["begin", "produce 0/4", "produce 0/5", "send_offsets 0:6", "abort"]
    assert sorted(consumer.seeks) == [("t", 0, 4), ("t", 1, 9)]
    assert scoring._pending is None and scoring.state.counts["consumed"] == 0


def test_at_least_once_commits_at_most_every_interval_and_everything_when_partitions_move() -> None:
    scoring, consumer, producer = at_least_once_loop()
    for offset in range(3):
        deliver(scoring, [incoming(0, offset)])
        producer.callbacks[-1](None, None)
        scoring._settle()
    # The first acknowledged batch is committed at once; the next two wait for the interval...
    assert consumer.commits == [({("t", 0): 1}, True)] and scoring._acknowledged
    scoring._on_revoke(consumer, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    # ...or for the partitions to move, when what is acknowledged is committed synchronously.
    assert consumer.commits[-1] == ({("t", 0): 3}, False) and not scoring._acknowledged
