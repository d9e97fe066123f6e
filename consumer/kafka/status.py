"""Scorer statuses out: one ScorerStatus per reload attempt (and on start-up / after a fatal stop) on the compacted
``housing.scorer-status``, keyed by instance id, so the latest per instance is the fleet view
(``consumer.kafka.topic_reader.read_fleet`` / ``fleet_view``).

- ``StatusHeartbeat`` (a Worker) repeats the latest status every ``SCORER_HEARTBEAT_SECONDS`` with a fresh
  ``heartbeat_at``: an instance that stops beating (killed, frozen, cut off) turns ``stale`` in /api/fleet.
- A clean stop publishes a tombstone (key = instance id, value None): the instance leaves the view, and compaction
  drops its history. A fatal stop leaves its ``stopped`` status (with the error) instead, for the operator to see.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer

from config.settings import Settings
from consumer.errors import ControlPublishError
from consumer.kafka.delivery import control_producer, produce_and_flush
from consumer.workers import Worker
from schemas.clock import now_ms
from schemas.control import ScorerStatus
from schemas.errors import SchemaError

logger = logging.getLogger(__name__)


class StatusPublisher:
    """Writes this instance's ScorerStatus to the compacted status topic; best effort, never blocks long."""

    def __init__(self, settings: Settings, *, timeout: float = 5.0, clock: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        self.topic = settings.topics.scorer_status
        self.instance_id = settings.scorer.instance_id
        self.timeout = timeout
        self.clock = clock
        """Epoch milliseconds (injectable for tests)."""
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self._latest: ScorerStatus | None = None
        """The newest status sent or attempted: what a heartbeat repeats (also one the broker missed)."""
        self._closed = False
        self.last: ScorerStatus | None = None
        """The newest status the broker acknowledged."""
        self.final_status: Callable[[], Mapping[str, Any] | None] | None = None
        """Set by the service, asked by ``stop()``: None after a clean stop (the instance leaves the view with a
        tombstone), else the fields of the ``stopped`` status that stays (a fatal stop, with its error)."""

    def publish(self, result: str, *, model_version: str | None, event_id: str | None = None,
                detail: str | None = None, load_seconds: float | None = None,
                model_name: str | None = None) -> ScorerStatus | None:
        """Publish one status; returns it, or None when the broker did not take it (logged, not raised) or the
        publisher is stopped."""
        status = ScorerStatus(
            instance_id=self.instance_id,
            model_name=model_name or self.settings.model.name,
            model_version=model_version,
            event_id=event_id,
            result=result,
            detail=detail[:1000] if detail else None,
            load_seconds=None if load_seconds is None else float(load_seconds),
            at=self.clock(),
        )
        with self._lock:
            if self._closed:
                logger.debug("scorer status %s not published: the publisher is stopped", result)
                return None
            self._latest = status
            return status if self._send(status) else None

    def heartbeat(self) -> ScorerStatus | None:
        """Repeat the latest status with ``heartbeat_at`` = now (this instance is alive); returns what was sent, or
        None when there is nothing to repeat yet, the publisher is stopped, or the broker did not take it."""
        with self._lock:
            if self._closed or self._latest is None:
                return None
            beat = dataclasses.replace(self._latest, heartbeat_at=self.clock())
            self._latest = beat
            return beat if self._send(beat) else None

    def _send(self, status: ScorerStatus | None) -> bool:
        """Produce ``status`` (None: this instance's tombstone) and wait for it; True when the broker took it.
        Call with the lock held."""
        what = "tombstone" if status is None else f"scorer status {status.result}"
        try:
            if self._producer is None:
                self._producer = control_producer(self.settings, self.timeout)
            produce_and_flush(self._producer, self.topic, self.instance_id,
                              None if status is None else status.to_bytes(), self.timeout,
                              self.settings.kafka.bootstrap_servers)
        except (ControlPublishError, KafkaException, SchemaError) as exc:
            logger.warning("%s not published to %s: %s", what, self.topic, exc)
            return False
        if status is not None:
            self.last = status
        return True

    def stop(self) -> None:
        """Leave the fleet view: a tombstone after a clean stop, the ``stopped`` status after a fatal one; then
        close. Nothing is published after this (a late reload result or heartbeat would bring the instance back)."""
        fields = self.final_status() if self.final_status else None
        if fields is not None:
            self.publish("stopped", **dict(fields))
        with self._lock:
            if fields is None and not self._closed and self._send(None):
                logger.info("%s left the fleet view (tombstone on %s)", self.instance_id, self.topic)
            self._closed = True
            self._producer = None  # flushed by _send; dropping it closes its connections now


class StatusHeartbeat(Worker):
    """Repeats the publisher's latest status every ``interval`` seconds, until stopped (``status-heartbeat``)."""

    def __init__(self, publisher: StatusPublisher, interval: float) -> None:
        super().__init__("status-heartbeat")
        self.publisher = publisher
        self.interval = interval

    def _run(self) -> None:
        while not self.sleep(self.interval):
            try:
                self.publisher.heartbeat()
            except Exception:  # a bug: keep beating; the next beat may work, the log says what broke
                logger.exception("status heartbeat failed")
