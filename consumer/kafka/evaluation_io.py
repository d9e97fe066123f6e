"""housing-evaluate's Kafka I/O: the two input readers, the transactional writer, the latest values of the
compacted evaluator topics.

- ``InputReader``: one topic (predictions, outcomes, or the scorers' dead letters for the canary's health), every
  partition assigned by hand from given offsets
  (no consumer group: the evaluator's positions live in its checkpoint), read_committed, and it knows when it
  has caught up (every partition at its end).
- ``EvaluationWriter``: a transactional producer (transactional.id from ``EVALUATOR_ID``, so a restarted
  evaluator fences its predecessor); the outcomes' dead letters go out inside the open transaction, which the
  checkpoint and the snapshot commit.
- ``latest_values``: the latest value per key of a compacted topic (the checkpoint to resume from; the
  snapshots that GET /api/model/performance serves).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from config.settings import Settings
from consumer.errors import ScorerError
from consumer.kafka.clients import reader_config
from consumer.kafka.topic_reader import read_topic, topic_partitions
from schemas.topics import (
    HEADER_DLQ_MESSAGE,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SOURCE_OFFSET,
    HEADER_DLQ_SOURCE_PARTITION,
    HEADER_DLQ_SOURCE_TOPIC,
    HEADER_DLQ_STAGE,
)

logger = logging.getLogger(__name__)

CHECKPOINT_MAX_BYTES = 16 * 1024 * 1024
"""The checkpoint topic's max.message.bytes (schemas.topics.EVALUATOR_CHECKPOINTS)."""
Start = Literal["earliest", "latest"]


class EvaluationKafkaError(ScorerError):
    """Kafka refused or failed what the evaluator needs (a topic missing, a transaction that failed)."""

    retriable = False


@dataclass(frozen=True, slots=True)
class InputMessage:
    """One message of an input topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    """Only from a reader opened ``with_headers`` (the dead letters: their reason, stage and model version)."""
    timestamp: int = 0
    """The message's Kafka timestamp (epoch ms), only ``with_headers``."""


class InputReader:
    """Reads one topic from given offsets, batch by batch.

    :param start: partition -> first offset; partitions not in it start at ``default_start``.
    :param with_headers: keep each message's headers and timestamp (the predictions and outcomes need neither).
    """

    def __init__(self, settings: Settings, topic: str, start: Mapping[int, int], default_start: Start,
                 timeout: float = 10.0, *, with_headers: bool = False) -> None:
        self.topic = topic
        self._with_headers = with_headers
        config = reader_config(settings, "evaluator")
        config.update({"enable.partition.eof": True, "fetch.wait.max.ms": 100,
                       "client.id": f"housing-evaluator-{settings.evaluation.evaluator_id}"})
        self._consumer = Consumer(config)
        try:
            partitions = topic_partitions(self._consumer, topic, timeout)
        except KafkaException as exc:
            self._consumer.close()
            raise EvaluationKafkaError(f"cannot read the partitions of {topic}: {exc}") from exc
        if partitions is None:
            self._consumer.close()
            raise EvaluationKafkaError(f"topic {topic} does not exist (housing-stack up creates it)")
        self.next_offsets: dict[int, int] = {}
        """partition -> the next offset to read (what a checkpoint records)."""
        for partition in partitions:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if partition in start:
                self.next_offsets[partition] = max(start[partition], low)
            else:
                self.next_offsets[partition] = low if default_start == "earliest" else high
        self._consumer.assign([TopicPartition(topic, p, o if o >= 0 else OFFSET_BEGINNING)
                               for p, o in self.next_offsets.items()])
        self._at_end: set[int] = set()

    @property
    def caught_up(self) -> bool:
        """Every partition has reached its end (read_committed: its last stable offset) since its last message."""
        return len(self._at_end) == len(self.next_offsets)

    def poll(self, max_messages: int, timeout: float) -> list[InputMessage]:
        """Up to ``max_messages`` messages (fewer when caught up).

        :raises EvaluationKafkaError: a consumer error other than a partition's end.
        """
        out = []
        for message in self._consumer.consume(max_messages, timeout):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(message.partition() or 0)
                    continue
                if error.retriable():
                    logger.warning("evaluator: %s: %s", self.topic, error)
                    continue
                raise EvaluationKafkaError(f"reading {self.topic}: {error}")
            partition, offset = message.partition() or 0, message.offset() or 0
            self._at_end.discard(partition)
            # Never back: reading again from an older pending row must not move the recorded position back.
            if offset + 1 > self.next_offsets.get(partition, 0):
                self.next_offsets[partition] = offset + 1
            if self._with_headers:
                headers = cast("list[tuple[str, bytes | None]]", message.headers() or [])
                out.append(InputMessage(partition, offset, message.key(), message.value(), tuple(headers),
                                        message.timestamp()[1]))
            else:
                out.append(InputMessage(partition, offset, message.key(), message.value()))
        return out

    def lag(self, timeout: float = 1.0) -> int:
        """Messages between the positions and the high watermarks (markers included; a gauge, not a count)."""
        total = 0
        for partition, following in self.next_offsets.items():
            try:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                               timeout=timeout, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                total += max(0, high - following)
        return total

    def close(self) -> None:
        self._consumer.close()


def writer_config(settings: Settings) -> dict[str, Any]:
    evaluation = settings.evaluation
    config = settings.kafka.client_config()
    config.update({
        "client.id": f"housing-evaluator-{evaluation.evaluator_id}",
        "transactional.id": f"housing-evaluator-{evaluation.evaluator_id}",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": CHECKPOINT_MAX_BYTES,
        # A checkpoint interval plus room: the transaction stays open between two checkpoints.
        "transaction.timeout.ms": max(60_000, int(evaluation.checkpoint_seconds * 4000)),
    })
    return config


class EvaluationWriter:
    """Dead letters inside the open transaction; ``commit`` adds the checkpoint and the snapshot and commits."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self._settings = settings
        self._timeout = timeout
        self._errors: list[str] = []
        self._producer = Producer({**writer_config(settings), "error_cb": self._on_error})
        try:
            self._producer.init_transactions(timeout)
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise EvaluationKafkaError(f"cannot start the evaluator's transactions: {exc}") from exc

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._errors.append(str(error))
        else:
            logger.debug("evaluator producer: %s", error)

    def _on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self._errors.append(str(error))

    def dead_letter(self, *, key: bytes | None, value: bytes | None, reason: str, message: str, stage: str,
                    source_partition: int, source_offset: int) -> None:
        topics = self._settings.topics
        headers: list[tuple[str, str | bytes | None]] = [
            (HEADER_DLQ_REASON, reason.encode()), (HEADER_DLQ_MESSAGE, message.encode("utf-8", "replace")),
            (HEADER_DLQ_STAGE, stage.encode()), (HEADER_DLQ_SOURCE_TOPIC, topics.outcomes.encode()),
            (HEADER_DLQ_SOURCE_PARTITION, str(source_partition).encode()),
            (HEADER_DLQ_SOURCE_OFFSET, str(source_offset).encode())]
        self._produce(topics.outcomes_dead_letter, value, key, headers)

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        """One more message inside the open transaction (the canary decider's state and announcements)."""
        self._produce(topic, value, key)

    def _produce(self, topic: str, value: bytes | None, key: bytes | None,
                 headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def commit(self, checkpoint: bytes, snapshot: bytes) -> None:
        """Write the checkpoint and the snapshot, commit everything since the last commit, open the next
        transaction.

        :raises EvaluationKafkaError: the commit failed (the evaluator stops: its memory is ahead of the last
            committed checkpoint, a restart resumes from it).
        """
        evaluation, topics = self._settings.evaluation, self._settings.topics
        key = evaluation.evaluator_id.encode()
        self._produce(topics.evaluator_checkpoints, checkpoint, key)
        self._produce(topics.evaluation, snapshot, key)
        try:
            self._producer.commit_transaction(self._timeout)
        except KafkaException as exc:
            raise EvaluationKafkaError(f"committing the checkpoint failed: {exc}") from exc
        if self._errors:
            raise EvaluationKafkaError(f"the evaluator's producer failed: {self._errors[0]}")
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise EvaluationKafkaError(f"cannot begin the next transaction: {exc}") from exc

    def close(self) -> None:
        """Abort what is open (it is re-read from the last checkpoint) and let go."""
        try:
            self._producer.abort_transaction(5.0)
        except KafkaException as exc:
            logger.debug("evaluator: abort on close: %s", exc)
        self._producer.flush(1.0)


def latest_values(settings: Settings, topic: str, timeout: float = 10.0, *, purpose: str = "evaluation"
                  ) -> dict[str, bytes]:
    """The latest value per key (UTF-8 text) of a compacted topic, up to its current end (tombstones remove).

    :raises EvaluationKafkaError: Kafka did not answer, or the topic could not be read to its end in time.
    """
    try:
        messages = read_topic(settings, topic, timeout, purpose=purpose)
    except (KafkaException, TimeoutError) as exc:
        raise EvaluationKafkaError(f"cannot read {topic}: {exc}") from exc
    latest: dict[str, bytes] = {}
    for message in messages:
        key = (message.key() or b"").decode("utf-8", "replace")
        value = message.value()
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return latest
