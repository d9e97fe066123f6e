"""consumer.kafka.loop without a broker: how long a batch gathers, how partitions are named in the logs, and
``run()`` on fake clients (which strategy, what is produced and committed, the rebalance callbacks, close)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from config.settings import Settings, load_settings
from consumer.core.handle import ModelHandle
from consumer.kafka import loop, producer
from consumer.kafka.loop import ScoringLoop
from consumer.state import ScorerState
from schemas.errors import RegistryUnavailableError


def test_a_batch_gathers_until_the_wait_after_the_previous_cut() -> None:
    # Right after a cut: the whole wait. Part-way: the rest of it.
    assert loop.gather_seconds(last_cut=100.0, now=100.0, batch_max_wait_ms=5) == pytest.approx(0.005)
    assert loop.gather_seconds(last_cut=100.0, now=100.002, batch_max_wait_ms=5) == pytest.approx(0.003)
    # The last batch took longer than the wait, or the stream was quiet: records that queued meanwhile go at once.
    assert loop.gather_seconds(last_cut=100.0, now=100.008, batch_max_wait_ms=5) == 0.0
    assert loop.gather_seconds(last_cut=0.0, now=5000.0, batch_max_wait_ms=5) == 0.0
    assert loop.gather_seconds(last_cut=100.0, now=100.0, batch_max_wait_ms=0) == 0.0


def test_describe_partitions_names_topic_and_partition() -> None:
    assert loop.describe_partitions([TopicPartition("t", 0), TopicPartition("t", 2)]) == "t[0], t[2]"
    assert loop.describe_partitions([]) == "nothing"


# --- run() on fake clients: the loop's wiring of the clients, the strategy and the rebalance callbacks --------

def settings(**flat: Any) -> Settings:
    base = {"scorer.group_id": "g", "scorer.instance_id": "i1", "topics.records": "t"}
    return load_settings({**base, **flat}, env={}, config_path=None)


class FakeMessage:
    """A record the scorer rejects at decode (not JSON): a dead letter, never a model call."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"not json"

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


class ScriptedConsumer:
    """Assigns t[0], hands out one record per poll, then revokes t[0] and stops the loop."""

    made: list[ScriptedConsumer] = []
    loop: ScoringLoop | None = None
    """The loop under test, stopped once the records are handed out."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.records = [FakeMessage(0, 5), FakeMessage(0, 6)]
        self.assigned: list[TopicPartition] = []
        self.commits: list[tuple[dict[tuple[str, int], int], bool]] = []
        self.closed = False
        ScriptedConsumer.made.append(self)

    def subscribe(self, topics: list[str], *, on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.topics, self.on_assign, self.on_revoke = topics, on_assign, on_revoke

    def poll(self, timeout: float) -> FakeMessage | None:
        if not self.assigned:
            self.assigned = [TopicPartition("t", 0)]
            self.on_assign(self, self.assigned)
        if self.records:
            return self.records.pop(0)
        self.on_revoke(self, self.assigned)
        self.assigned = []
        assert self.loop is not None
        self.loop.stop()
        return None

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        return []

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        """The loop applies an incremental change in the callback; this fake keeps its own assignment."""

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        """As incremental_assign."""

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return partitions  # the loop's wake-up call after a rebalance (its answer is not used)

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(({(tp.topic, tp.partition): tp.offset for tp in offsets}, asynchronous))

    def consumer_group_metadata(self) -> object:
        return object()

    def assignment(self) -> list[TopicPartition]:
        return self.assigned

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (0, 7)

    def seek(self, tp: TopicPartition) -> None:
        raise AssertionError(f"nothing fails here, nothing is rewound: {tp}")

    def close(self) -> None:
        self.closed = True


class RecordingProducer:
    """Acknowledges the first output when polled and the rest only when flushed; records every call."""

    made: list[RecordingProducer] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.calls: list[str] = []
        self.unacknowledged: list[Any] = []
        self.acknowledge_on_poll = 1
        RecordingProducer.made.append(self)

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, on_delivery: Any = None) -> None:
        self.calls.append(f"produce {topic}")
        if on_delivery is not None:
            self.unacknowledged.append(on_delivery)

    def _acknowledge(self, count: int) -> None:
        for callback in self.unacknowledged[:count]:
            callback(None, None)
        del self.unacknowledged[:count]

    def poll(self, timeout: float) -> int:
        count = min(self.acknowledge_on_poll, len(self.unacknowledged))
        self.acknowledge_on_poll -= count
        self._acknowledge(count)
        return 0

    def flush(self, timeout: float) -> int:
        self.calls.append("flush")
        self._acknowledge(len(self.unacknowledged))
        return 0

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float) -> None:
        self.calls.append("send_offsets " + ",".join(f"{tp.partition}:{tp.offset}" for tp in offsets))

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")


def run_on_fakes(monkeypatch: pytest.MonkeyPatch, guarantee: str,
                 consumer_class: type[ScriptedConsumer] = ScriptedConsumer,
                 ) -> tuple[ScoringLoop, ScriptedConsumer, RecordingProducer]:
    ScriptedConsumer.made.clear()
    RecordingProducer.made.clear()
    monkeypatch.setattr(loop, "Consumer", consumer_class)
    monkeypatch.setattr(producer, "Producer", RecordingProducer)
    s = settings(**{"scorer.processing_guarantee": guarantee})
    state = ScorerState(s)
    state.models.swap(ModelHandle(model=None, name="m", version="1"))  # type: ignore[arg-type]
    scoring = ScoringLoop(s, state)
    monkeypatch.setattr(ScriptedConsumer, "loop", scoring)
    scoring.run()
    [consumer], [made] = ScriptedConsumer.made, RecordingProducer.made
    return scoring, consumer, made


def test_run_at_least_once_produces_and_commits_what_is_acknowledged_when_partitions_are_revoked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    scoring, consumer, made = run_on_fakes(monkeypatch, "at_least_once")
    assert "on_commit" in consumer.config and "transactional.id" not in made.config
    assert consumer.topics == ["t"]
    # The first record's dead letter is acknowledged at once and committed; the second's only at the revoke's
    # flush, which then commits synchronously before the partition moves on.
    assert consumer.commits == [({("t", 0): 6}, True), ({("t", 0): 7}, False)]
    assert made.calls == [f"produce {scoring.settings.topics.dead_letter}"] * 2 + ["flush", "flush"]
    assert scoring.state.counts["consumed"] == 2 and scoring.state.counts["dead_lettered"] == 2
    assert consumer.closed and scoring.state.consumer_running is False and scoring.abandoned_clients == 0


def test_run_exactly_once_commits_each_batch_in_a_transaction_and_finishes_it_before_the_revoke(
        monkeypatch: pytest.MonkeyPatch) -> None:
    scoring, consumer, made = run_on_fakes(monkeypatch, "exactly_once")
    assert "on_commit" not in consumer.config and made.config["transactional.id"] == "g-i1"
    dlq = f"produce {scoring.settings.topics.dead_letter}"
    assert made.calls == ["init", "begin", dlq, "send_offsets 0:6", "commit", "begin", dlq, "send_offsets 0:7",
                          "commit", "flush"]
    assert consumer.commits == []  # the offsets went in the transactions
    assert scoring.state.counts["consumed"] == 2 and scoring.state.counts["dead_lettered"] == 2
    assert consumer.closed and scoring.abandoned_clients == 0


# --- the lag gauge of a partition that moved (issue 12, item 5) --------------------------------------------------

class LaggingConsumer(ScriptedConsumer):
    """5,000 records behind on t[0] while it is assigned; then t[0] is revoked."""

    lag_reads = 0

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        self.lag_reads += 1
        return (0, 5007)


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_the_lag_series_of_a_revoked_partition_is_removed(monkeypatch: pytest.MonkeyPatch, guarantee: str) -> None:
    scoring, consumer, _ = run_on_fakes(monkeypatch, guarantee, LaggingConsumer)
    assert isinstance(consumer, LaggingConsumer)
    registry = scoring.state.metrics.registry
    # The lag was read while t[0] was assigned ...
    assert consumer.lag_reads, "the lag was never read"
    # ... and once t[0] moved on, neither /health nor the gauge keeps its last value.
    assert scoring.state.total_lag() == 0
    assert registry.get_sample_value("housing_scorer_consumer_lag", {"topic": "t", "partition": "0"}) is None


def test_a_partition_left_out_of_a_lag_refresh_loses_its_series() -> None:
    state = ScorerState(settings())
    state.set_lag({("t", 0): 5000, ("t", 1): 3})
    state.set_lag({("t", 1): 4})  # t[0] moved to another member between two refreshes
    registry = state.metrics.registry
    assert registry.get_sample_value("housing_scorer_consumer_lag", {"topic": "t", "partition": "0"}) is None
    assert registry.get_sample_value("housing_scorer_consumer_lag", {"topic": "t", "partition": "1"}) == 4
    assert state.total_lag() == 4


# --- a rebalance while a batch gathers (issue 12, item 4) ---------------------------------------------------------

class NumberedMessage(FakeMessage):
    """A record rejected at decode whose value names its offset, so each dead letter says which record it is."""

    def value(self) -> bytes:
        return f"not json {self._offset}".encode()


class RebalancingConsumer:
    """t[0] holds offsets 5 and 6, committed offset 5. poll() hands out the record at the position; the first
    consume() after it revokes and re-assigns t[0] (a quick rebalance: the fetch starts again at the committed
    offset) and then hands out what follows. Once the log is read, t[0] is revoked and the loop stopped."""

    made: list[RebalancingConsumer] = []
    loop: ScoringLoop | None = None
    END = 7

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.committed_offset = self.next_offset = 5
        self.assigned: list[TopicPartition] = []
        self.rebalanced = False
        self.seeks: list[tuple[str, int, int]] = []
        self.closed = False
        RebalancingConsumer.made.append(self)

    def subscribe(self, topics: list[str], *, on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        """The loop applies an incremental change in the callback; this fake keeps its own assignment."""

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        """As incremental_assign."""

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return partitions  # the loop's wake-up call after a rebalance (its answer is not used)

    def _assign(self) -> None:
        self.assigned = [TopicPartition("t", 0)]
        self.next_offset = self.committed_offset
        self.on_assign(self, self.assigned)

    def _take(self, count: int) -> list[NumberedMessage]:
        taken = []
        while len(taken) < count and self.next_offset < self.END:
            taken.append(NumberedMessage(0, self.next_offset))
            self.next_offset += 1
        return taken

    def poll(self, timeout: float) -> NumberedMessage | None:
        if not self.assigned:
            self._assign()
        if self.next_offset < self.END:
            return self._take(1)[0]
        self.on_revoke(self, self.assigned)
        self.assigned = []
        assert self.loop is not None
        self.loop.stop()
        return None

    def consume(self, num_messages: int, timeout: float) -> list[NumberedMessage]:
        if not self.rebalanced:
            self.rebalanced = True
            self.on_revoke(self, self.assigned)
            self.assigned = []
            self._assign()
        return self._take(num_messages)

    def committed(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.committed_offset) for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))
        self.next_offset = tp.offset

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.committed_offset = offsets[0].offset

    def consumer_group_metadata(self) -> object:
        return object()

    def assignment(self) -> list[TopicPartition]:
        return self.assigned

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.next_offset) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (0, self.END)

    def close(self) -> None:
        self.closed = True


class ValueRecordingProducer(RecordingProducer):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.values: list[bytes] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, on_delivery: Any = None) -> None:
        self.values.append(value)
        super().produce(topic, value, key, headers, on_delivery)


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_batch_that_gathered_across_a_rebalance_is_dropped_and_rewound(monkeypatch: pytest.MonkeyPatch,
                                                                         guarantee: str) -> None:
    RebalancingConsumer.made.clear()
    RecordingProducer.made.clear()
    monkeypatch.setattr(loop, "Consumer", RebalancingConsumer)
    monkeypatch.setattr(producer, "Producer", ValueRecordingProducer)
    s = settings(**{"scorer.processing_guarantee": guarantee})
    state = ScorerState(s)
    state.models.swap(ModelHandle(model=None, name="m", version="1"))  # type: ignore[arg-type]
    scoring = ScoringLoop(s, state)
    monkeypatch.setattr(RebalancingConsumer, "loop", scoring)
    scoring.run()
    [consumer], [made] = RebalancingConsumer.made, RecordingProducer.made
    assert isinstance(made, ValueRecordingProducer)
    # The first batch had offset 5 from before the rebalance and 5, 6 fetched again after it: scored, offset 5
    # would have gone out twice in one transaction. Dropped and rewound instead; each offset is scored once.
    assert made.values == [b"not json 5", b"not json 6"]
    assert consumer.seeks == [("t", 0, 5)]
    assert scoring.state.counts["consumed"] == 2 and scoring.state.counts["dead_lettered"] == 2


# --- the schema registry away (issue 17 item 1): the batch is rewound, never skipped ---------------------------

class RewindingConsumer(ScriptedConsumer):
    """Seeking puts the record back at the head of the queue, as a real consumer fetches it again."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.seeks: list[tuple[str, int, int]] = []

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))
        self.records.insert(0, FakeMessage(tp.partition, tp.offset))


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_batch_scored_while_the_schema_registry_is_away_is_rewound_and_scored_once_it_answers(
        monkeypatch: pytest.MonkeyPatch, guarantee: str) -> None:
    real_score_batch = loop.score_batch
    attempts: list[int] = []

    def registry_away_once(batch: list[Any], *args: Any, **kwargs: Any) -> Any:
        attempts.append(batch[0].offset)
        if len(attempts) == 1:
            raise RegistryUnavailableError("schema registry at mock:// did not answer")
        return real_score_batch(batch, *args, **kwargs)

    monkeypatch.setattr(loop, "score_batch", registry_away_once)
    scoring, consumer, made = run_on_fakes(monkeypatch, guarantee, RewindingConsumer)
    assert isinstance(consumer, RewindingConsumer)
    assert consumer.seeks == [("t", 0, 5)]  # back to the batch's first record: nothing skipped
    assert attempts == [5, 5, 6]  # the same record again, then the next
    dlq = f"produce {scoring.settings.topics.dead_letter}"
    assert made.calls.count(dlq) == 2  # nothing was produced for the failed attempt
    assert scoring.state.counts["consumed"] == 2 and scoring.state.counts["dead_lettered"] == 2
    committed = [c for c, _ in consumer.commits] or [
        {("t", 0): int(call.split(":")[1])} for call in made.calls if call.startswith("send_offsets")]
    assert committed[-1] == {("t", 0): 7}
