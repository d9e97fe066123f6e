"""The Kafka side of ``housing-replay`` (consumer/replay/): reading a fixed range of the records topic with
explicit offsets, and writing its outputs in transactions that carry the replay's progress.

``RangeReader`` assigns partitions itself (``assign``, never ``subscribe``): it joins no consumer group, commits
nothing on its own, and so cannot move the live scorers' offsets. Its ``group.id`` is the replay group, used only
for the offsets the producer commits in each transaction (``send_offsets_to_transaction``, with a group metadata
of generation -1: a standalone consumer's). ``ReplayWriter`` is a transactional producer whose transactional.id is
the replay group: a re-run fences a crashed replay's producer and aborts its open transaction before it starts.
Client configs come from consumer.kafka.clients; outputs are produced as the scorer produces them
(``OutputProducer.produce_all``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from config.settings import Settings
from consumer.core.scoring import BatchResult, Incoming
from consumer.errors import ScorerError
from consumer.kafka.clients import admin_config, producer_config, reader_config
from consumer.kafka.oversize import DEFAULT_BATCH_BYTES, RefusedOutputs, topic_limit_reader
from consumer.kafka.policy import FENCED_CODES, RETRIABLE_OFFSET_CODES
from consumer.kafka.producer import OutputProducer

logger = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 30.0
"""One attempt of a metadata, offsets or transactional call."""
RETRY_SECONDS = 120.0
"""A retriable transactional or offsets call is retried for this long before the replay gives up (resumable)."""


class ReplayKafkaError(ScorerError):
    """A Kafka call of the replay failed; ``retriable`` says whether the broker may answer later."""

    def __init__(self, message: str, *, retriable: bool = False, fenced: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.fenced = fenced


class TransactionAborted(ScorerError):
    """The batch's transaction was aborted (an abortable error): nothing of it is visible; read it again."""

    retriable = True


def topic_partition_counts(settings: Settings, topics: list[str],
                           timeout: float = 10.0) -> dict[str, int | None]:
    """Partitions of each topic; None for a topic that does not exist.

    :raises ReplayKafkaError: the broker did not answer (retriable) or refused this client.
    """
    admin = AdminClient(admin_config(settings))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        error = exc.args[0]
        raise ReplayKafkaError(f"Kafka at {settings.kafka.bootstrap_servers} did not answer a metadata request "
                               f"({error.str() if isinstance(error, KafkaError) else error}): check "
                               "KAFKA_BOOTSTRAP_SERVERS and the security settings", retriable=True) from exc
    counts: dict[str, int | None] = {}
    for topic in topics:
        found = metadata.topics.get(topic)
        counts[topic] = None if found is None or found.error is not None else len(found.partitions)
    return counts


def to_incoming(message: Message) -> Incoming:
    """The scoring core's view of a consumed record."""
    timestamp_type, timestamp = message.timestamp()
    # A consumer without deserializers yields bytes keys/values/headers and a set topic/partition/offset.
    return Incoming(message.key(), message.value(), message.topic(), message.partition(),  # type: ignore[arg-type]
                    message.offset(), timestamp if timestamp_type else None,  # type: ignore[arg-type]
                    tuple(message.headers() or ()))  # type: ignore[arg-type]


class RangeReader:
    """Reads ``[start, end)`` of each partition of one topic, read_committed, with no group membership."""

    def __init__(self, settings: Settings, topic: str, replay_group: str, *, consumer: Consumer | None = None) -> None:
        """:param consumer: the client to read with (tests); default: a reader of the replay group."""
        self.topic = topic
        config = {**reader_config(settings, "replay"), "group.id": replay_group,
                  "client.id": f"housing-replay-{replay_group}", "enable.partition.eof": True,
                  "fetch.wait.max.ms": 100}
        self.consumer = consumer if consumer is not None else Consumer(config)
        self._ends: dict[int, int] = {}
        self._active: set[int] = set()
        self.positions: dict[int, int] = {}
        """partition -> the next offset to read, after every record returned so far (the end when finished)."""

    # --- look-ups before the range is known ----------------------------------------------------------
    def watermarks(self, partitions: int) -> dict[int, tuple[int, int]]:
        """partition -> (low, high) of every partition, asked of the broker now."""
        out = {}
        for partition in range(partitions):
            low, high = self._call(lambda p=partition: self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=CALL_TIMEOUT_SECONDS, cached=False), "reading the watermarks")
            out[partition] = (int(low), int(high))
        return out

    def offsets_for_time(self, partitions: list[int], ms: int) -> dict[int, int | None]:
        """partition -> the first offset with a timestamp at or after ``ms``; None where there is none yet."""
        found = self._call(lambda: self.consumer.offsets_for_times(
            [TopicPartition(self.topic, p, ms) for p in partitions], timeout=CALL_TIMEOUT_SECONDS),
            f"looking up offsets for time {ms}")
        return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in found}

    def committed(self, partitions: list[int]) -> dict[int, tuple[int, str | None]]:
        """The replay group's committed offset and metadata of each partition (offset < 0: none)."""

        def read() -> list[TopicPartition]:
            result = self.consumer.committed([TopicPartition(self.topic, p) for p in partitions],
                                             timeout=CALL_TIMEOUT_SECONDS)
            failed = next((tp.error for tp in result if tp.error is not None), None)
            if failed is not None:
                raise KafkaException(failed)
            return result

        return {tp.partition: (tp.offset, tp.metadata) for tp in self._call(read, "reading the replay's progress")}

    def _call(self, call: Any, what: str) -> Any:
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                return call()
            except KafkaException as exc:
                error = exc.args[0]
                retriable = error.retriable() or error.code() in RETRIABLE_OFFSET_CODES
                if not retriable or time.monotonic() >= deadline:
                    raise ReplayKafkaError(f"{what} of {self.topic}: {error.str()}", retriable=retriable) from exc
                logger.warning("%s of %s: %s (retrying)", what, self.topic, error.str())
                time.sleep(1.0)

    # --- reading the range ---------------------------------------------------------------------------
    def start(self, positions: Mapping[int, int], ends: Mapping[int, int]) -> None:
        """Read each partition from ``positions[p]`` up to ``ends[p]`` (exclusive)."""
        self._ends = dict(ends)
        self.positions = dict(positions)
        self._assign()

    def rewind(self, positions: Mapping[int, int]) -> None:
        """Read again from ``positions`` (after an aborted transaction: the positions of the last committed one)."""
        self.positions.update(positions)
        self._assign()

    def _assign(self) -> None:
        self._active = {p for p, offset in self.positions.items() if offset < self._ends[p]}
        self.consumer.assign([TopicPartition(self.topic, p, self.positions[p]) for p in sorted(self._active)])

    @property
    def finished(self) -> bool:
        return not self._active

    def next_batch(self, max_records: int, timeout: float) -> list[Incoming]:
        """Up to ``max_records`` records of the range, in offset order per partition; a partition stops at its end
        (a record at or past it, or the end of the partition there)."""
        batch: list[Incoming] = []
        if not self._active:
            return batch
        for message in self.consumer.consume(max_records, timeout):
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None or partition not in self._active:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if offset >= self._ends[partition]:
                        self._finish(partition)
                    continue
                if error.fatal() or not error.retriable() and error.code() != KafkaError._TRANSPORT:
                    raise ReplayKafkaError(f"consuming {self.topic}[{partition}]: {error.str()}")
                logger.warning("consume error on %s[%d]: %s", self.topic, partition, error.str())
                continue
            end = self._ends[partition]
            if offset >= end:
                self._finish(partition)
                continue
            batch.append(to_incoming(message))
            self.positions[partition] = offset + 1
            if offset + 1 >= end:
                self._finish(partition)
        return batch

    def _finish(self, partition: int) -> None:
        self.positions[partition] = self._ends[partition]
        self._active.discard(partition)
        self.consumer.pause([TopicPartition(self.topic, partition)])

    def group_metadata(self) -> Any:
        return self.consumer.consumer_group_metadata()

    def close(self) -> None:
        try:
            self.consumer.close()  # never joined a group: nothing to leave, nothing committed
        except (KafkaException, RuntimeError) as exc:
            logger.warning("replay reader close: %s", exc)


class ReplayWriter:
    """A transactional producer: each batch's predictions, dead letters and progress offsets in one transaction."""

    def __init__(self, settings: Settings, transactional_id: str, output_topic: str, dlq_topic: str,
                 *, client: Producer | None = None) -> None:
        """:param client: the producer to use (tests); default: the scorer's exactly-once producer config with
            this transactional.id."""
        eos = settings.replace(**{"scorer.processing_guarantee": "exactly_once"})
        config = {**producer_config(eos), "transactional.id": transactional_id,
                  "client.id": f"housing-replay-{transactional_id}", "error_cb": self._on_error}
        self.client = client if client is not None else Producer(config)
        self.output_topic = output_topic
        self.dlq_topic = dlq_topic
        self._output = OutputProducer(eos, self._on_error, client=self.client)
        self.refused = RefusedOutputs(output_topic, batch_bytes=int(config.get("batch.size", DEFAULT_BATCH_BYTES)),
                                      topic_limit=topic_limit_reader(settings))
        """Predictions the broker refused as too large: dead-lettered (output_too_large) when scored again."""
        self._open = False

    def _on_error(self, error: KafkaError) -> None:
        # Connection trouble is retried by librdkafka and shows in the calls' own errors.
        logger.debug("replay producer: %s", error.str())

    def init(self) -> None:
        """Fence any earlier producer of this transactional.id and abort its open transaction."""
        try:
            self._retrying(lambda: self.client.init_transactions(CALL_TIMEOUT_SECONDS), "init_transactions")
        except KafkaException as exc:
            raise self._failure(exc.args[0], "init_transactions") from exc

    def write(self, result: BatchResult | None, offsets: Mapping[int, tuple[int, str]], source_topic: str,
              group_metadata: Any) -> None:
        """Produce ``result``'s outputs and commit ``offsets`` (partition -> next offset, marker) in one transaction.

        :raises TransactionAborted: an abortable error; the transaction was aborted, nothing of it is visible.
        :raises ReplayKafkaError: anything else (fenced by another replay, the broker gone for too long).
        """
        client = self.client
        try:
            client.begin_transaction()
            self._open = True
            if result is not None:
                self._output.produce_all(result, self.output_topic, self.dlq_topic,
                                         on_delivery=self.refused.watch(result))
            targets = [TopicPartition(source_topic, p, offset, metadata=marker)
                       for p, (offset, marker) in sorted(offsets.items())]
            if targets:
                self._retrying(lambda: client.send_offsets_to_transaction(targets, group_metadata,
                                                                          CALL_TIMEOUT_SECONDS),
                               "send_offsets_to_transaction")
            self._retrying(lambda: client.commit_transaction(CALL_TIMEOUT_SECONDS), "commit_transaction")
            self._open = False
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                self.abort()
                raise TransactionAborted(f"transaction aborted: {error.str()}") from exc
            raise self._failure(error, "the transaction") from exc

    def abort(self) -> None:
        """Abort the open transaction, if any (its outputs never become visible to read_committed readers)."""
        if not self._open:
            return
        try:
            self._retrying(lambda: self.client.abort_transaction(CALL_TIMEOUT_SECONDS), "abort_transaction")
        except (KafkaException, ReplayKafkaError) as exc:
            # Unanswered: the coordinator aborts it after transaction.timeout.ms, and a re-run's init fences it.
            logger.warning("abort_transaction: %s", exc)
        self._open = False

    def _retrying(self, call: Any, what: str) -> None:
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not (isinstance(error, KafkaError) and error.retriable()) or time.monotonic() >= deadline:
                    raise
                logger.warning("%s: %s (retrying)", what, error.str())

    @staticmethod
    def _failure(error: Any, what: str) -> ReplayKafkaError:
        if isinstance(error, KafkaError):
            if error.code() in FENCED_CODES:
                return ReplayKafkaError(f"{what} was fenced: another housing-replay with the same replay group "
                                        f"(transactional.id) started ({error.str()})", fenced=True)
            return ReplayKafkaError(f"{what} failed: {error.str()}", retriable=error.retriable())
        return ReplayKafkaError(f"{what} failed: {error}")

    def close(self) -> None:
        self.abort()
        self.client.flush(5)
