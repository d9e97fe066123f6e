"""Broker-free stand-ins for the control plane's Kafka clients (messages, a producer, a consumer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from config.settings import Settings, load_settings


def settings(**flat: Any) -> Settings:
    base = {"model.name": "m", "scorer.instance_id": "i1"}
    return load_settings({**base, **flat}, env={}, config_path=None)


class FakeMessage:
    def __init__(self, value: bytes | None, *, key: bytes | None = None, topic: str = "t", partition: int = 0,
                 offset: int = 0) -> None:
        self._value, self._key, self._topic = value, key, topic
        self._partition, self._offset = partition, offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class FakeProducer:
    """Acknowledges every message at flush, unless ``unacknowledged`` (flush then reports it pending)."""

    def __init__(self, *, unacknowledged: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.unacknowledged = unacknowledged
        self._pending: list[Callable[[Any, Any], None]] = []

    def produce(self, topic: str, *, key: bytes, value: bytes | None,
                on_delivery: Callable[[Any, Any], None]) -> None:
        self.sent.append((topic, key, value))
        self._pending.append(on_delivery)

    def flush(self, timeout: float) -> int:
        if self.unacknowledged:
            return len(self._pending)
        for callback in self._pending:
            callback(None, None)
        self._pending.clear()
        return 0


class FakeConsumer:
    """Hands out the queued messages one ``poll`` at a time, then nothing."""

    def __init__(self, messages: Iterable[FakeMessage]) -> None:
        self.messages = list(messages)
        self.assignment: list[Any] = []
        self.closed = threading.Event()

    def assign(self, offsets: list[Any]) -> None:
        self.assignment = list(offsets)

    def poll(self, timeout: float) -> FakeMessage | None:
        if self.messages:
            return self.messages.pop(0)
        time.sleep(0.01)
        return None

    def close(self) -> None:
        self.closed.set()
