"""Reading the control-plane topics with throwaway consumers (assign, no group, no commits).

- ``end_offsets`` / ``control_start_offsets``: where a starting scorer's control listener begins (the control
  topic's end, taken before the start-up model is resolved, so an event published meanwhile is not missed).
- ``read_topic``: every message of a topic from its beginning up to its current end.
- ``read_fleet``: the latest ScorerStatus per instance, from the compacted status topic (a tombstone removes the
  instance); ``fleet_view`` says what each is (serving, stale, stopped) at a given time: the admin API's /api/fleet.
- ``read_model_updates``: every ModelUpdateEvent on the control topic so far (the admin API's
  /api/model/history).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from config.settings import Settings
from consumer.kafka.clients import reader_config
from schemas.control import ModelUpdateEvent, ScorerStatus
from schemas.errors import SchemaError

logger = logging.getLogger(__name__)


def topic_partitions(consumer: Consumer, topic: str, timeout: float) -> list[int] | None:
    """The partition ids of ``topic``, sorted; None when it does not exist (or has none).

    :raises KafkaException: Kafka did not answer the metadata request.
    """
    metadata = consumer.list_topics(topic, timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return None
    return sorted(found.partitions)


def end_offsets(settings: Settings, topic: str, timeout: float = 10.0) -> list[TopicPartition] | None:
    """The current end offset of every partition of ``topic``: ``[]`` when the topic does not exist, None when
    Kafka did not answer."""
    consumer = Consumer(reader_config(settings, "offsets"))
    try:
        partitions = topic_partitions(consumer, topic, timeout)
        if partitions is None:
            return []
        out = []
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            out.append(TopicPartition(topic, partition, high))
        return out
    except KafkaException as exc:
        logger.warning("could not read the end offsets of %s: %s", topic, exc)
        return None
    finally:
        consumer.close()


def control_start_offsets(settings: Settings, timeout: float = 10.0) -> list[TopicPartition] | None:
    """Where a starting scorer's listener must begin: the control topic's end, taken before the model loads
    (``[]``: no such topic yet; None: Kafka did not answer)."""
    return end_offsets(settings, settings.topics.model_updates, timeout)


def read_topic(settings: Settings, topic: str, timeout: float = 5.0, *, purpose: str = "reader") -> list[Message]:
    """Every message of ``topic`` from its beginning up to its current end, with a throwaway consumer (assign,
    no group, no commits); ``[]`` when the topic does not exist or is empty.

    :raises KafkaException: Kafka did not answer the metadata request.
    :raises TimeoutError: the topic could not be read to its end within ``timeout`` seconds.
    """
    consumer = Consumer(reader_config(settings, purpose))
    deadline = time.monotonic() + timeout
    out: list[Message] = []
    try:
        partitions = topic_partitions(consumer, topic, timeout)
        if partitions is None:
            return []
        ends: dict[int, int] = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=max(0.1, deadline - time.monotonic()))
            if high > low:
                ends[partition] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout:.0f}s")
            for message in consumer.consume(500, 0.2):
                if message.error() is not None:
                    continue
                out.append(message)
                partition, offset = message.partition() or 0, message.offset() or 0
                if partition in ends and offset + 1 >= ends[partition]:
                    del ends[partition]
            # A partition whose tail is compacted away or holds only transaction markers never delivers its
            # last offset: use the position instead.
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= 0 and tp.offset >= ends.get(tp.partition, 0):
                    ends.pop(tp.partition, None)
        return out
    finally:
        consumer.close()


def read_fleet(settings: Settings, timeout: float = 5.0) -> dict[str, ScorerStatus]:
    """The latest ScorerStatus per instance id, read from the compacted status topic up to its current end.

    :raises ControlPublishError: never; an unreadable topic gives ``{}`` (logged).
    :raises TimeoutError: the topic could not be read to its end within ``timeout`` seconds.
    """
    topic = settings.topics.scorer_status
    try:
        messages = read_topic(settings, topic, timeout, purpose="fleet")
    except KafkaException as exc:
        logger.warning("fleet: cannot read %s: %s", topic, exc)
        return {}
    fleet: dict[str, ScorerStatus] = {}
    for message in messages:
        key = (message.key() or b"").decode("utf-8", "replace")
        value = message.value()
        if value is None:  # tombstone: the instance was removed from the fleet view
            fleet.pop(key, None)
            continue
        try:
            fleet[key] = ScorerStatus.from_bytes(value)
        except SchemaError as exc:
            logger.warning("fleet: bad status at %s[%d]@%d: %s", topic, message.partition() or 0,
                           message.offset() or 0, exc)
    return fleet


FleetState = Literal["serving", "stale", "stopped"]
"""serving: alive (a status or heartbeat newer than the stale limit); stale: silent for longer (killed, frozen or
cut off from Kafka: no tombstone, no heartbeat); stopped: its last word was ``stopped`` (a fatal stop)."""

FLEET_STATES: Final[tuple[FleetState, ...]] = get_args(FleetState)


@dataclass(frozen=True)
class FleetMember:
    """One instance of the fleet view: its latest status and what that means at the time of the view."""

    status: ScorerStatus
    state: FleetState
    age_seconds: float
    """Seconds since its last sign of life (``status.last_seen_at``); 0 when that lies ahead (clock skew)."""

    @property
    def last_seen_at(self) -> int:
        return self.status.last_seen_at

    def as_dict(self) -> dict[str, Any]:
        """The status's fields, then ``state``, ``last_seen_at`` and ``age_seconds`` (one instance of /api/fleet)."""
        return {**self.status.as_dict(), "state": self.state, "last_seen_at": self.last_seen_at,
                "age_seconds": round(self.age_seconds, 1)}


def fleet_view(statuses: Mapping[str, ScorerStatus], *, now_ms: int, stale_after: float) -> list[FleetMember]:
    """Each instance's state at ``now_ms`` (epoch milliseconds), sorted by instance id.

    :param stale_after: seconds of silence (no status, no heartbeat) after which a running instance is ``stale``.
    """
    members = []
    for instance_id in sorted(statuses):
        status = statuses[instance_id]
        age = max(0.0, (now_ms - status.last_seen_at) / 1000.0)
        state: FleetState = "stopped" if status.result == "stopped" else "stale" if age > stale_after else "serving"
        members.append(FleetMember(status=status, state=state, age_seconds=age))
    return members


def read_model_updates(settings: Settings, timeout: float = 10.0) -> list[ModelUpdateEvent]:
    """Every ModelUpdateEvent on the control topic so far (all models), oldest first by ``issued_at``.

    :raises KafkaException: Kafka did not answer.
    :raises TimeoutError: the topic could not be read to its end within ``timeout`` seconds.
    """
    topic = settings.topics.model_updates
    events = []
    for message in read_topic(settings, topic, timeout, purpose="history"):
        try:
            events.append(ModelUpdateEvent.from_bytes(message.value() or b""))
        except SchemaError as exc:
            logger.warning("history: skipping a malformed event at %s[%d]@%d: %s", topic, message.partition() or 0,
                           message.offset() or 0, exc)
    events.sort(key=lambda event: (event.issued_at, event.event_id))
    return events
