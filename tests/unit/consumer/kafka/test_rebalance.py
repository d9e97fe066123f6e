"""Rebalances of the scoring loop without a broker (issue 16, part 1): which group protocol the consumer joins
with (KAFKA_GROUP_PROTOCOL), the fall-back from the consumer protocol a broker refuses, and the incremental
callbacks on fake clients: the partitions kept are consumed on, the records of a partition revoked while a
batch was fetched are dropped, the transaction in flight is committed before the revoke, and when that commit
fails the kept partitions go back to their committed offsets."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition

from config.settings import Settings, load_settings
from config.spec import SettingsError
from consumer.core.handle import ModelHandle
from consumer.errors import ScorerFatalError
from consumer.kafka import loop, positions, producer
from consumer.kafka.clients import consumer_config, first_group_protocol, group_protocol_config
from consumer.kafka.loop import ScoringLoop, refuses_consumer_protocol
from consumer.state import ScorerState
from tests.unit.consumer.kafka.test_loop import RecordingProducer, ScriptedConsumer

CLASSIC_ONLY = ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy")
"""Client settings of the classic protocol; librdkafka refuses them with group.protocol=consumer."""


def settings(**flat: Any) -> Settings:
    base = {"scorer.group_id": "g", "scorer.instance_id": "i1", "topics.records": "t"}
    return load_settings({**base, **flat}, env={}, config_path=None)


# --- the protocol the consumer joins with ---------------------------------------------------------------------

def test_auto_joins_with_the_consumer_protocol_and_leaves_timeouts_and_assignor_to_the_broker() -> None:
    config = consumer_config(settings())
    assert config["group.protocol"] == "consumer"
    assert not set(CLASSIC_ONLY) & config.keys()
    assert first_group_protocol("auto") == "consumer"


@pytest.mark.parametrize(("setting", "assignor"), [("classic", "cooperative-sticky"), ("classic-eager", "range")])
def test_classic_protocols_name_their_assignor_and_a_short_session(setting: str, assignor: str) -> None:
    config = consumer_config(settings(**{"kafka.group_protocol": setting}))
    assert config["group.protocol"] == "classic"
    assert config["partition.assignment.strategy"] == assignor
    assert config["session.timeout.ms"] == 10000  # a dead scorer's partitions move on within seconds
    assert group_protocol_config("consumer") == {"group.protocol": "consumer"}


def test_the_setting_comes_from_the_environment_and_a_bad_value_names_it() -> None:
    env = {"KAFKA_GROUP_PROTOCOL": "classic-eager"}
    assert load_settings({}, env=env, config_path=None).kafka.group_protocol == "classic-eager"
    with pytest.raises(SettingsError, match="KAFKA_GROUP_PROTOCOL"):
        load_settings({}, env={"KAFKA_GROUP_PROTOCOL": "sticky"}, config_path=None)


def test_the_brokers_refusal_of_the_consumer_protocol_is_recognised() -> None:
    assert refuses_consumer_protocol(KafkaError(KafkaError.UNSUPPORTED_VERSION, "ConsumerGroupHeartbeat fatal "
                                                "error: Broker: Unsupported version", fatal=True))
    assert refuses_consumer_protocol(KafkaError(KafkaError._UNSUPPORTED_FEATURE, fatal=True))
    assert not refuses_consumer_protocol(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED, fatal=True))
    assert not refuses_consumer_protocol(KafkaError(KafkaError._ALL_BROKERS_DOWN))


# --- falling back when the broker refuses the consumer protocol --------------------------------------------------

class RefusingBrokerConsumer(ScriptedConsumer):
    """A broker without the consumer protocol: a consumer that joins with it gets librdkafka's fatal error at its
    first heartbeat (inside poll) and nothing assigned; one that joins with the classic protocol is served."""

    def poll(self, timeout: float) -> Any:
        if self.config["group.protocol"] == "consumer":
            self.config["error_cb"](KafkaError(KafkaError.UNSUPPORTED_VERSION,
                                               "ConsumerGroupHeartbeat fatal error: Broker: Unsupported version",
                                               fatal=True))
            return None
        return super().poll(timeout)


def run_loop(monkeypatch: pytest.MonkeyPatch, consumer_class: Any, producer_class: type, **flat: Any,
             ) -> ScoringLoop:
    consumer_class.made.clear()
    RecordingProducer.made.clear()
    monkeypatch.setattr(loop, "Consumer", consumer_class)
    monkeypatch.setattr(producer, "Producer", producer_class)
    s = settings(**flat)
    state = ScorerState(s)
    state.models.swap(ModelHandle(model=None, name="m", version="1"))  # type: ignore[arg-type]
    scoring = ScoringLoop(s, state)
    monkeypatch.setattr(consumer_class, "loop", scoring)
    scoring.run()
    return scoring


def test_auto_falls_back_to_classic_cooperative_sticky_when_the_broker_refuses_the_consumer_protocol(
        monkeypatch: pytest.MonkeyPatch) -> None:
    scoring = run_loop(monkeypatch, RefusingBrokerConsumer, RecordingProducer)
    refused, classic = RefusingBrokerConsumer.made
    assert refused.config["group.protocol"] == "consumer" and refused.closed
    assert classic.config["group.protocol"] == "classic"
    assert classic.config["partition.assignment.strategy"] == "cooperative-sticky"
    assert classic.topics == ["t"]  # subscribed again
    assert scoring.group_protocol == "classic" and scoring.incremental
    assert scoring.state.counts["consumed"] == 2  # and it scores


def test_an_explicit_consumer_protocol_the_broker_refuses_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ScorerFatalError, match="UNSUPPORTED_VERSION"):
        run_loop(monkeypatch, RefusingBrokerConsumer, RecordingProducer, **{"kafka.group_protocol": "consumer"})
    assert len(RefusingBrokerConsumer.made) == 1


# --- incremental callbacks on fake clients --------------------------------------------------------------------

class Record:
    """A record rejected at decode whose value names its partition and offset (its dead letter says which)."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return f"not json {self._partition}:{self._offset}".encode()

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def headers(self) -> None:
        return None


class IncrementalConsumer:
    """An incremental rebalance in the middle of a stream. t[0] holds offsets 5-6 and t[1] offsets 8-9. The first
    poll assigns both and hands out t[0]@5; the first consume hands out t[1]@8 (batch 1). The second poll hands
    out t[0]@6; the second consume fetches t[1]@9 and then revokes t[1] alone (another member takes it), so
    batch 2 holds a record of a partition that moved. When t[0] is read to its end, it is revoked too and the loop
    stopped. ``events`` interleaves the producer's calls with the ends of the revoke callbacks."""

    made: list[IncrementalConsumer] = []
    loop: ScoringLoop | None = None
    events: list[str] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.next = {0: 5, 1: 8}
        self.end = {0: 7, 1: 10}
        self.committed_offsets = {0: 5, 1: 8}
        self.assigned: list[int] = []
        self.seeks: list[tuple[int, int]] = []
        self.consumes = 0
        self.closed = False
        IncrementalConsumer.made.append(self)

    def subscribe(self, topics: list[str], *, on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def _take(self, partition: int) -> Record:
        record = Record(partition, self.next[partition])
        self.next[partition] += 1
        return record

    def poll(self, timeout: float) -> Record | None:
        if not self.assigned and self.consumes == 0:
            self.assigned = [0, 1]
            self.on_assign(self, [TopicPartition("t", 0), TopicPartition("t", 1)])
        if 0 in self.assigned and self.next[0] < self.end[0]:
            return self._take(0)
        if self.assigned:
            revoked = list(self.assigned)
            self.on_revoke(self, [TopicPartition("t", p) for p in revoked])
            self.events.append(f"revoked {revoked}")
            self.assigned = []
        assert self.loop is not None
        self.loop.stop()
        return None

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        self.consumes += 1
        if self.consumes == 1:
            return [self._take(1)]
        if self.consumes == 2:
            fetched = self._take(1)
            self.on_revoke(self, [TopicPartition("t", 1)])
            self.events.append("revoked [1]")
            self.assigned = [0]
            return [fetched]
        return []

    def committed(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.committed_offsets[tp.partition]) for tp in partitions]

    # librdkafka pauses every assigned partition for an incremental callback and resumes them in
    # incremental_assign / incremental_unassign, without waking their fetcher; the loop must apply the change
    # itself and then send the leaders a request (offsets_for_times) that wakes them.
    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.events.append(f"incremental_assign {sorted(tp.partition for tp in partitions)}")
        self.assigned = sorted({*self.assigned, *(tp.partition for tp in partitions)})

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        self.events.append(f"incremental_unassign {sorted(tp.partition for tp in partitions)}")
        self.assigned = [p for p in self.assigned if p not in {tp.partition for tp in partitions}]

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        assert all(tp.offset == OFFSET_END for tp in partitions)  # the latest offsets: nothing is sought
        self.events.append(f"wake {sorted(tp.partition for tp in partitions)}")
        return [TopicPartition(tp.topic, tp.partition, self.end[tp.partition]) for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self.next[tp.partition] = tp.offset

    def consumer_group_metadata(self) -> object:
        return object()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", p) for p in self.assigned]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.next[tp.partition]) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (0, self.end[tp.partition])

    def close(self) -> None:
        self.closed = True


class EventProducer(RecordingProducer):
    """Records each dead letter by its value and each transactional call in the consumer's ``events``."""

    fail_commits = 0
    """The first commits that fail (an error that needs an abort)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.values: list[str] = []
        self.commits = 0

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, on_delivery: Any = None) -> None:
        self.values.append(value.decode().removeprefix("not json "))
        IncrementalConsumer.events.append(f"produce {self.values[-1]}")
        super().produce(topic, value, key, headers, on_delivery)

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float) -> None:
        IncrementalConsumer.events.append("send_offsets " + ",".join(f"{tp.partition}:{tp.offset}" for tp in offsets))

    def commit_transaction(self, timeout: float) -> None:
        self.commits += 1
        if self.commits <= self.fail_commits:
            IncrementalConsumer.events.append("commit failed")
            raise KafkaException(KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "epoch", txn_requires_abort=True))
        IncrementalConsumer.events.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        IncrementalConsumer.events.append("abort")


class FailingFirstCommit(EventProducer):
    fail_commits = 1


def run_incremental(monkeypatch: pytest.MonkeyPatch, producer_class: type[EventProducer], **flat: Any,
                    ) -> tuple[ScoringLoop, IncrementalConsumer, EventProducer, list[frozenset[int]]]:
    IncrementalConsumer.events = []
    assignments: list[frozenset[int]] = []
    report = ScorerState.set_assignment

    def recording(state: ScorerState, partitions: frozenset[tuple[str, int]]) -> None:
        assignments.append(frozenset(p for _, p in partitions))
        report(state, partitions)

    monkeypatch.setattr(ScorerState, "set_assignment", recording)
    scoring = run_loop(monkeypatch, IncrementalConsumer, producer_class, **flat)
    [consumer], [made] = IncrementalConsumer.made, RecordingProducer.made
    assert isinstance(made, EventProducer)
    return scoring, consumer, made, assignments


def test_an_incremental_revoke_commits_the_transaction_in_flight_drops_only_the_moved_partition_and_keeps_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    scoring, consumer, made, assignments = run_incremental(monkeypatch, EventProducer)
    assert scoring.group_protocol == "consumer" and scoring.incremental
    # Batch 1 (t[0]@5, t[1]@8) is committed before t[1] moves; batch 2's record of t[1] (@9) is dropped, its new
    # owner scores it from the committed offset 9; t[0]@6 of the same batch is scored, t[0] is never sought back.
    assert made.values == ["0:5", "1:8", "0:6"]
    assert [e for e in consumer.events if not e.startswith(("incremental", "wake"))] == [
        "produce 0:5", "produce 1:8", "send_offsets 0:6,1:9", "commit", "revoked [1]", "produce 0:6",
        "send_offsets 0:7", "commit", "revoked [0]"]
    assert consumer.seeks == []
    # The assignment is taken from, not emptied: t[0] stays assigned while t[1] moves.
    assert assignments == [frozenset({0, 1}), frozenset({0}), frozenset(), frozenset()]  # the last at close


def test_a_commit_that_fails_in_the_revoke_sends_the_kept_partitions_back_to_their_committed_offsets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    scoring, consumer, made, _ = run_incremental(monkeypatch, FailingFirstCommit)
    # Batch 1's commit fails inside the revoke and is aborted: t[1]'s new owner starts at its committed offset 8,
    # and t[0], kept, is sought back to its committed 5 (its position, 7, was past records never committed);
    # batch 2 (t[0]@6, t[1]@9) is dropped whole. t[0] is then scored again from 5, once.
    assert consumer.seeks == [(0, 5)]
    assert made.values == ["0:5", "1:8", "0:5", "0:6"]
    assert [e for e in consumer.events if not e.startswith(("incremental", "wake"))] == [
        "produce 0:5", "produce 1:8", "send_offsets 0:6,1:9", "commit failed", "abort", "revoked [1]", "produce 0:5",
        "send_offsets 0:6", "commit", "produce 0:6", "send_offsets 0:7", "commit", "revoked [0]"]
    assert scoring.state.counts["consumed"] == 2  # only the committed batch counts


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_after_an_incremental_callback_the_loop_applies_the_change_and_wakes_the_fetchers_of_the_partitions_kept(
        monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    # librdkafka resumes the kept partitions (paused for the callback) without waking their broker thread, which
    # then fetched nothing for up to 1 s (0.5-0.9 s measured). The revoke commits first, then gives t[1] up, then
    # sends t[0]'s leader a request; at the assign, the same for both partitions; the last revoke leaves nothing
    # to wake.
    _, consumer, _, _ = run_incremental(monkeypatch, EventProducer, **{"kafka.group_protocol": protocol})
    assert consumer.events == [
        "incremental_assign [0, 1]", "wake [0, 1]", "produce 0:5", "produce 1:8", "send_offsets 0:6,1:9", "commit",
        "incremental_unassign [1]", "wake [0]", "revoked [1]", "produce 0:6", "send_offsets 0:7", "commit",
        "incremental_unassign [0]", "revoked [0]"]


def test_with_the_eager_protocol_the_client_applies_the_change_and_nothing_needs_waking(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, consumer, _, _ = run_incremental(monkeypatch, EventProducer, **{"kafka.group_protocol": "classic-eager"})
    assert not [e for e in consumer.events if e.startswith(("incremental", "wake"))]


class RefusingIncrementalCalls(IncrementalConsumer):
    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        raise KafkaException(KafkaError(KafkaError._STATE, "not in a rebalance"))


def test_an_incremental_call_that_fails_in_the_callback_is_left_to_the_client(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    IncrementalConsumer.events = []
    RefusingIncrementalCalls.made = IncrementalConsumer.made = []
    run_loop(monkeypatch, RefusingIncrementalCalls, EventProducer)
    [consumer] = RefusingIncrementalCalls.made
    # No wake after the failed unassign (t[1] would still be assigned), and the loop scores on.
    assert "wake [0]" not in consumer.events and "produce 0:6" in consumer.events
    assert "incremental unassign of t[1] failed (the client applies it after the callback)" in caplog.text


class DestroyedConsumer:
    """A consumer being destroyed (close() in progress): librdkafka answers every call with _DESTROY."""

    def assignment(self) -> list[TopicPartition]:
        raise KafkaException(KafkaError(KafkaError._DESTROY, "Failed to get assignment: Local: Broker handle "
                                                             "destroyed for termination"))

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        raise AssertionError("nothing to wake: the assignment could not be read")


def test_waking_the_fetchers_of_a_consumer_being_destroyed_raises_nothing() -> None:
    # An exception raised in a rebalance callback comes out of close() in a form no except clause matches
    # (seen: the scoring thread ended with a bare KafkaError).
    positions.wake_fetchers(DestroyedConsumer())  # type: ignore[arg-type]
