"""The control plane on Kafka: model-update events out (the publishers) and in (the listener).

- ``publish_model_update``: announce a promotion / reload / rollback on ``housing.model-updates`` (keyed by
  model name); used by housing-train. The admin API and its webhook receiver keep one ``ModelUpdatePublisher``
  (one producer) for the app's lifetime instead.
- ``ControlListener``: a thread in every scorer reading the control topic with its own consumer, by
  ``assign()`` to every partition (no consumer group, no commits), so every instance sees every event. The
  service takes the topic's end offsets *before* it resolves its start-up model
  (``consumer.kafka.topic_reader.control_start_offsets``) and the listener reads from there, so an event
  published while the instance starts is not missed.

Events travel as ``schemas.control.ModelUpdateEvent``. Scorer statuses are ``consumer.kafka.status``; reading
the topics back (fleet view, history) is ``consumer.kafka.topic_reader``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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
from consumer.kafka.clients import reader_config
from consumer.kafka.delivery import control_producer, produce_and_flush
from consumer.kafka.topic_reader import topic_partitions
from consumer.workers import Worker
from schemas.control import ModelUpdateEvent
from schemas.errors import SchemaError

logger = logging.getLogger(__name__)

EventCallback = Callable[[ModelUpdateEvent], object]
"""Receives each decoded ModelUpdateEvent (for this scorer's model name) on the listener thread."""


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
                stage: str | None = None, model_uri: str | None = None, source: str,
                canary_fraction: float | None = None, decision: str | None = None,
                evidence: str | None = None) -> ModelUpdateEvent:
        """Announce a model change to every scorer; returns the event as published.

        :param type: ``promoted`` (an alias/stage now points at ``version``), ``reload`` (resolve again) or
            ``rollback`` (back to ``version``, or to each scorer's previous version when None).
        :param source: who issued it (training, admin_api, webhook, ...), shown in statuses and logs.
        :raises ControlPublishError: the broker did not acknowledge it within ``timeout`` seconds.
        :raises ValueError: unknown type.
        """
        event = ModelUpdateEvent.new(type=type, model_name=model_name, version=version, alias=alias, stage=stage,
                                     model_uri=model_uri, source=source, canary_fraction=canary_fraction,
                                     decision=decision, evidence=evidence)
        self.publish_event(event)
        logger.info("published %s event %s for %s v%s (@%s) to %s", type, event.event_id, model_name, version,
                    alias, self.settings.topics.model_updates)
        return event

    def publish_event(self, event: ModelUpdateEvent) -> None:
        """Publish a complete ModelUpdateEvent as given (e.g. re-sending one with its original event id).

        :raises ControlPublishError: not acknowledged within ``timeout`` seconds.
        :raises ValidationError: the event does not match the ModelUpdateEvent schema.
        """
        settings = self.settings
        value = event.to_bytes()
        with self._lock:
            if self._producer is None:
                self._producer = control_producer(settings, self.timeout)
            try:
                produce_and_flush(self._producer, settings.topics.model_updates, event.model_name, value,
                                  self.timeout, settings.kafka.bootstrap_servers)
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
                         source: str, timeout: float = 10.0) -> ModelUpdateEvent:
    """One-shot ``ModelUpdatePublisher.publish`` with a producer of its own (housing-train, tests, bench)."""
    return ModelUpdatePublisher(settings, timeout=timeout).publish(
        type=type, model_name=model_name, version=version, alias=alias, stage=stage, model_uri=model_uri,
        source=source)


def publish_event(settings: Settings, event: ModelUpdateEvent, *, timeout: float = 10.0) -> None:
    """One-shot ``ModelUpdatePublisher.publish_event`` with a producer of its own."""
    ModelUpdatePublisher(settings, timeout=timeout).publish_event(event)


# --- reading the control topic ------------------------------------------------------------------------


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
        consumer = Consumer(reader_config(self.settings, "control"))
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
                partitions = topic_partitions(consumer, self.topic, 5.0)
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
            event = ModelUpdateEvent.from_bytes(value or b"")
        except SchemaError as exc:
            logger.warning("ignoring a malformed control message at %s[%d]@%d: %s", message.topic(),
                           message.partition(), message.offset(), exc)
            return
        if event.model_name != self.settings.model.name:
            logger.debug("control event %s is for %s, not %s", event.event_id, event.model_name,
                         self.settings.model.name)
            return
        self.events_seen += 1
        logger.info("control event %s: %s %s v%s @%s from %s", event.event_id, event.type,
                    event.model_name, event.version, event.alias or event.stage, event.source)
        try:
            self.on_event(event)
        except Exception:
            logger.exception("handling control event %s failed", event.event_id)
