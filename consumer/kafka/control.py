"""The control plane on Kafka: model-update events in, scorer statuses out, and the fleet view.

- ``publish_model_update``: announce a promotion / reload / rollback on ``housing.model-updates`` (keyed by
  model name); used by housing-train. The admin API and its webhook receiver keep one ``ModelUpdatePublisher``
  (one producer) for the app's lifetime instead.
- ``ControlListener``: a thread in every scorer reading the control topic with its own consumer, by
  ``assign()`` to every partition (no consumer group, no commits), so every instance sees every event. The
  service takes the topic's end offsets *before* it resolves its start-up model and the listener reads from
  there, so an event published while the instance starts is not missed.
- ``StatusPublisher``: one ScorerStatus per reload attempt (and on start-up / clean stop) on the compacted
  ``housing.scorer-status``, keyed by instance id.
- ``read_fleet``: the latest status per instance, read from the compacted topic (the admin API's /api/fleet).
- ``read_model_updates``: every event on the control topic so far (the admin API's /api/model/history).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from config.settings import Settings
from consumer.errors import ControlPublishError
from consumer.kafka.clients import control_producer_config, reader_config
from consumer.workers import Worker
from schemas.clock import now_ms
from schemas.codecs import decode_model_update, decode_scorer_status, encode_model_update, encode_scorer_status
from schemas.errors import SchemaError

logger = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], object]
"""Receives each decoded ModelUpdateEvent (for this scorer's model name) on the listener thread."""

EVENT_TYPES = ("promoted", "reload", "rollback")




def _producer(settings: Settings, timeout: float) -> Producer:
    return Producer(control_producer_config(settings, timeout))


def _produce_and_flush(producer: Producer, topic: str, key: str, value: bytes, timeout: float,
                       bootstrap: str) -> None:
    errors: list[str] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error.str())

    try:
        producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
    except (KafkaException, BufferError) as exc:
        raise ControlPublishError(f"could not send to {topic}: {exc}") from exc
    remaining = producer.flush(timeout)
    if errors:
        raise ControlPublishError(f"{topic} refused the message: {errors[0]}")
    if remaining:
        raise ControlPublishError(f"{topic}: not acknowledged within {timeout:.0f}s (is Kafka at "
                                  f"{bootstrap} up?)")


def build_model_update(*, type: str, model_name: str, version: str | None = None, alias: str | None = None,
                       stage: str | None = None, model_uri: str | None = None, source: str,
                       event_id: str | None = None, issued_at: int | None = None) -> dict[str, Any]:
    """A complete ModelUpdateEvent dict (fresh uuid4 event id and issue time unless given)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"event type must be one of {', '.join(EVENT_TYPES)}, got {type!r}")
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": type,
        "model_name": model_name,
        "version": None if version is None else str(version),
        "alias": alias,
        "stage": stage,
        "model_uri": model_uri,
        "issued_at": issued_at if issued_at is not None else now_ms(),
        "source": source,
    }


class ModelUpdatePublisher:
    """Publishes ModelUpdateEvents through one producer, made on first use and kept until ``close()``.

    For a caller that announces many events (the admin API keeps one for its lifetime); thread-safe, one event
    at a time, each flushed before ``publish`` returns. The one-shot functions below use a throwaway one.
    """

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def publish(self, *, type: str, model_name: str, version: str | None = None, alias: str | None = None,
                stage: str | None = None, model_uri: str | None = None, source: str) -> dict[str, Any]:
        """Announce a model change to every scorer; returns the event as published.

        :param type: ``promoted`` (an alias/stage now points at ``version``), ``reload`` (resolve again) or
            ``rollback`` (back to ``version``, or to each scorer's previous version when None).
        :param source: who issued it (training, admin_api, webhook, ...), shown in statuses and logs.
        :raises ControlPublishError: the broker did not acknowledge it within ``timeout`` seconds.
        :raises ValueError: unknown type.
        """
        event = build_model_update(type=type, model_name=model_name, version=version, alias=alias, stage=stage,
                                   model_uri=model_uri, source=source)
        self.publish_event(event)
        logger.info("published %s event %s for %s v%s (@%s) to %s", type, event["event_id"], model_name, version,
                    alias, self.settings.topics.model_updates)
        return event

    def publish_event(self, event: Mapping[str, Any]) -> None:
        """Publish a complete ModelUpdateEvent as given (e.g. re-sending one with its original event id).

        :raises ControlPublishError: not acknowledged within ``timeout`` seconds.
        :raises ValidationError: the event does not match the ModelUpdateEvent schema.
        """
        settings = self.settings
        with self._lock:
            if self._producer is None:
                self._producer = _producer(settings, self.timeout)
            try:
                _produce_and_flush(self._producer, settings.topics.model_updates, str(event["model_name"]),
                                   encode_model_update(event), self.timeout, settings.kafka.bootstrap_servers)
            except ControlPublishError:
                # Drop it, unacknowledged message and all: the next event gets a fresh producer (and connection),
                # exactly as when every event had its own.
                self._producer = None
                raise

    def close(self) -> None:
        """Flush (every publish already did: normally instant, at most ``timeout``), then drop the producer."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(self.timeout)  # dropping the last reference closes its connections


def publish_model_update(settings: Settings, *, type: str, model_name: str, version: str | None = None,
                         alias: str | None = None, stage: str | None = None, model_uri: str | None = None,
                         source: str, timeout: float = 10.0) -> dict[str, Any]:
    """One-shot ``ModelUpdatePublisher.publish`` with a producer of its own (housing-train, tests, bench)."""
    return ModelUpdatePublisher(settings, timeout=timeout).publish(
        type=type, model_name=model_name, version=version, alias=alias, stage=stage, model_uri=model_uri,
        source=source)


def publish_event(settings: Settings, event: Mapping[str, Any], *, timeout: float = 10.0) -> None:
    """One-shot ``ModelUpdatePublisher.publish_event`` with a producer of its own."""
    ModelUpdatePublisher(settings, timeout=timeout).publish_event(event)


# --- reading the control topic ------------------------------------------------------------------------


def _control_consumer(settings: Settings, purpose: str) -> Consumer:
    return Consumer(reader_config(settings, purpose))


def _partitions(consumer: Consumer, topic: str, timeout: float) -> list[int] | None:
    metadata = consumer.list_topics(topic, timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return None
    return sorted(found.partitions)


def end_offsets(settings: Settings, topic: str, timeout: float = 10.0) -> list[TopicPartition] | None:
    """The current end offset of every partition of ``topic``: ``[]`` when the topic does not exist, None when
    Kafka did not answer."""
    consumer = _control_consumer(settings, "offsets")
    try:
        partitions = _partitions(consumer, topic, timeout)
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


class ControlListener(Worker):
    """Reads the control topic on its own thread and hands events for this scorer's model to ``on_event``."""

    def __init__(self, settings: Settings, on_event: EventCallback, *,
                 start_offsets: list[TopicPartition] | None = None) -> None:
        super().__init__("control-listener")
        self.settings = settings
        self.topic = settings.topics.model_updates
        self.on_event = on_event
        self._start_offsets = start_offsets
        self.assigned = threading.Event()
        """Set once the consumer holds its assignment (tests and start-up wait on it)."""
        self.events_seen = 0

    def _run(self) -> None:
        consumer = _control_consumer(self.settings, "control")
        try:
            if not self._assign(consumer):
                return
            while not self.stopping:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        logger.warning("control topic %s: %s", self.topic, error.str())
                    continue
                self._handle(message)
        except Exception:  # a dead listener means no hot reload: say so loudly
            logger.exception("control listener on %s crashed; hot reload from events is off (the registry poll "
                             "still runs)", self.topic)
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> bool:
        offsets = self._start_offsets or None
        # No topic at start-up: every event in it once it exists came after this scorer began, so read it
        # all. Kafka unreachable at start-up: its history is unknown, so read only what comes next (replaying
        # an old rollback would be worse than missing an event the registry poll will catch anyway).
        start_at = OFFSET_BEGINNING if self._start_offsets == [] else OFFSET_END
        warned = False
        while offsets is None and not self.stopping:
            try:
                partitions = _partitions(consumer, self.topic, 5.0)
            except KafkaException as exc:
                partitions = None
                if not warned:
                    logger.warning("control topic %s: %s (retrying)", self.topic, exc)
            if partitions is not None:
                offsets = [TopicPartition(self.topic, p, start_at) for p in partitions]
                break
            if not warned:
                logger.warning("control topic %s does not exist yet: waiting for it", self.topic)
                warned = True
            self.sleep(2.0)
        if offsets is None:
            return False
        consumer.assign(offsets)
        self.assigned.set()
        logger.info("control listener reading %s from %s", self.topic,
                    ", ".join(f"[{tp.partition}]@{tp.offset}" for tp in offsets))
        return True

    def _handle(self, message: Message) -> None:
        value = message.value()
        try:
            event = decode_model_update(value or b"")
        except SchemaError as exc:
            logger.warning("ignoring a malformed control message at %s[%d]@%d: %s", message.topic(),
                           message.partition(), message.offset(), exc)
            return
        if event["model_name"] != self.settings.model.name:
            logger.debug("control event %s is for %s, not %s", event["event_id"], event["model_name"],
                         self.settings.model.name)
            return
        self.events_seen += 1
        logger.info("control event %s: %s %s v%s @%s from %s", event["event_id"], event["type"],
                    event["model_name"], event["version"], event["alias"] or event["stage"], event["source"])
        try:
            self.on_event(event)
        except Exception:
            logger.exception("handling control event %s failed", event["event_id"])


# --- scorer statuses ----------------------------------------------------------------------------------


class StatusPublisher:
    """Writes this instance's ScorerStatus to the compacted status topic; best effort, never blocks long."""

    def __init__(self, settings: Settings, *, timeout: float = 5.0) -> None:
        self.settings = settings
        self.topic = settings.topics.scorer_status
        self.instance_id = settings.scorer.instance_id
        self.timeout = timeout
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self.last: dict[str, Any] | None = None
        self.final_status: Callable[[], Mapping[str, Any] | None] | None = None
        """Set by the service: the fields of the ``stopped`` status published by ``stop()``."""

    def publish(self, result: str, *, model_version: str | None, event_id: str | None = None,
                detail: str | None = None, load_seconds: float | None = None,
                model_name: str | None = None) -> dict[str, Any] | None:
        """Publish one status; returns it, or None when the broker did not take it (logged, not raised)."""
        status = {
            "instance_id": self.instance_id,
            "model_name": model_name or self.settings.model.name,
            "model_version": model_version,
            "event_id": event_id,
            "result": result,
            "detail": detail[:1000] if detail else None,
            "load_seconds": None if load_seconds is None else float(load_seconds),
            "at": now_ms(),
        }
        with self._lock:
            try:
                if self._producer is None:
                    self._producer = _producer(self.settings, self.timeout)
                _produce_and_flush(self._producer, self.topic, self.instance_id, encode_scorer_status(status),
                                   self.timeout, self.settings.kafka.bootstrap_servers)
            except (ControlPublishError, KafkaException, SchemaError) as exc:
                logger.warning("scorer status %s not published to %s: %s", result, self.topic, exc)
                return None
        self.last = status
        return status

    def stop(self) -> None:
        """Publish the ``stopped`` status (clean stop), then close."""
        fields = self.final_status() if self.final_status else None
        if fields is not None:
            self.publish("stopped", **dict(fields))
        with self._lock:
            self._producer = None  # flushed by publish; dropping it closes its connections now


def read_topic(settings: Settings, topic: str, timeout: float = 5.0, *, purpose: str = "reader") -> list[Message]:
    """Every message of ``topic`` from its beginning up to its current end, with a throwaway consumer (assign,
    no group, no commits); ``[]`` when the topic does not exist or is empty.

    :raises KafkaException: Kafka did not answer the metadata request.
    :raises TimeoutError: the topic could not be read to its end within ``timeout`` seconds.
    """
    consumer = _control_consumer(settings, purpose)
    deadline = time.monotonic() + timeout
    out: list[Message] = []
    try:
        partitions = _partitions(consumer, topic, timeout)
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


def read_fleet(settings: Settings, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
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
    fleet: dict[str, dict[str, Any]] = {}
    for message in messages:
        key = (message.key() or b"").decode("utf-8", "replace")
        value = message.value()
        if value is None:  # tombstone: the instance was removed from the fleet view
            fleet.pop(key, None)
            continue
        try:
            fleet[key] = decode_scorer_status(value)
        except SchemaError as exc:
            logger.warning("fleet: bad status at %s[%d]@%d: %s", topic, message.partition() or 0,
                           message.offset() or 0, exc)
    return fleet


def read_model_updates(settings: Settings, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every ModelUpdateEvent on the control topic so far (all models), oldest first by ``issued_at``.

    :raises KafkaException: Kafka did not answer.
    :raises TimeoutError: the topic could not be read to its end within ``timeout`` seconds.
    """
    topic = settings.topics.model_updates
    events = []
    for message in read_topic(settings, topic, timeout, purpose="history"):
        try:
            events.append(decode_model_update(message.value() or b""))
        except SchemaError as exc:
            logger.warning("history: skipping a malformed event at %s[%d]@%d: %s", topic, message.partition() or 0,
                           message.offset() or 0, exc)
    events.sort(key=lambda event: (event["issued_at"], event["event_id"]))
    return events
