"""Scorer statuses out: one ScorerStatus per reload attempt (and on start-up / clean stop) on the compacted
``housing.scorer-status``, keyed by instance id, so the latest per instance is the fleet view
(``consumer.kafka.topic_reader.read_fleet``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer

from config.settings import Settings
from consumer.errors import ControlPublishError
from consumer.kafka.delivery import control_producer, produce_and_flush
from schemas.clock import now_ms
from schemas.control import ScorerStatus
from schemas.errors import SchemaError

logger = logging.getLogger(__name__)


class StatusPublisher:
    """Writes this instance's ScorerStatus to the compacted status topic; best effort, never blocks long."""

    def __init__(self, settings: Settings, *, timeout: float = 5.0) -> None:
        self.settings = settings
        self.topic = settings.topics.scorer_status
        self.instance_id = settings.scorer.instance_id
        self.timeout = timeout
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self.last: ScorerStatus | None = None
        self.final_status: Callable[[], Mapping[str, Any] | None] | None = None
        """Set by the service: the fields of the ``stopped`` status published by ``stop()``."""

    def publish(self, result: str, *, model_version: str | None, event_id: str | None = None,
                detail: str | None = None, load_seconds: float | None = None,
                model_name: str | None = None) -> ScorerStatus | None:
        """Publish one status; returns it, or None when the broker did not take it (logged, not raised)."""
        status = ScorerStatus(
            instance_id=self.instance_id,
            model_name=model_name or self.settings.model.name,
            model_version=model_version,
            event_id=event_id,
            result=result,
            detail=detail[:1000] if detail else None,
            load_seconds=None if load_seconds is None else float(load_seconds),
            at=now_ms(),
        )
        with self._lock:
            try:
                if self._producer is None:
                    self._producer = control_producer(self.settings, self.timeout)
                produce_and_flush(self._producer, self.topic, self.instance_id, status.to_bytes(),
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
