"""Kafka input and output of the benchmarks: pre-loading records, reading outputs, a live latency reader.

Outputs are always read ``read_committed`` (what a downstream consumer of the exactly-once scorer sees).
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from producer.publish import PublishReport, send_records
from producer.records import csv_records

logger = logging.getLogger(__name__)

_EVENT_TIME = re.compile(rb'"event_time":\s*(\d+)')


def preload(client_config: dict[str, Any], topic: str, count: int, *, start_id: int = 0,
            progress: bool = True) -> PublishReport:
    """Publish ``count`` JSON records of the housing CSV (looped) to ``topic`` as fast as the broker takes them."""
    report = send_records(csv_records(loop=True), client_config=client_config, topic=topic, count=count,
                          start_id=start_id, progress=progress)
    if not report.ok:
        raise RuntimeError(f"pre-loading {topic}: {report.failure_message()}")
    return report


def send_keyed(client_config: dict[str, Any], topic: str, count: int, prefix: str) -> None:
    """``count`` records keyed ``<prefix>-<n>`` (warm-up traffic the latency reader ignores)."""
    import json

    producer = Producer({**client_config, "linger.ms": 5})
    for n, record in enumerate(csv_records(loop=True)):
        if n >= count:
            break
        record["record_id"] = f"{prefix}-{n}"
        record["event_time"] = int(time.time() * 1000)
        producer.produce(topic, json.dumps(record).encode(), f"{prefix}-{n}".encode())
        if n % 500 == 0:
            producer.poll(0)
    if producer.flush(30):
        raise RuntimeError(f"warm-up records to {topic} not delivered")


def reader(client_config: dict[str, Any], topic: str, **extra: Any) -> Consumer:
    """A read_committed consumer of ``topic`` from the beginning, tuned to hand messages over at once."""
    consumer = Consumer({
        **client_config,
        "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        # The default 500 ms fetch wait would be measured as latency.
        "fetch.wait.max.ms": 5,
        **extra,
    })
    # Assigned, not subscribed: reading starts at once, without a group join that would hold back (and be
    # measured as latency) the first predictions.
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
    return consumer


@dataclass
class Outputs:
    """What a topic held: count, distinct keys, CreateTime timestamps (ms) and model versions."""

    count: int
    distinct_keys: int
    timestamps_ms: np.ndarray
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.count - self.distinct_keys

    def rate(self) -> float:
        """Records/s from the first output's timestamp to the last's (start-up excluded)."""
        if self.count < 2:
            return 0.0
        span = (float(self.timestamps_ms.max()) - float(self.timestamps_ms.min())) / 1000
        return (self.count - 1) / span if span > 0 else float("inf")


def read_outputs(client_config: dict[str, Any], topic: str, expect: int, *, timeout: float = 120.0,
                 idle_seconds: float = 5.0) -> Outputs:
    """Read ``topic`` until ``expect`` messages (or ``idle_seconds`` without any after that many, or timeout)."""
    consumer = reader(client_config, topic)
    keys: set[bytes] = set()
    stamps: list[int] = []
    versions: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if len(stamps) >= expect and time.monotonic() - last > 1.0:
                break  # a second more, to see duplicates beyond the expected count
            if time.monotonic() - last > idle_seconds and stamps:
                break
            for message in consumer.consume(2000, 0.2):
                if message.error():
                    continue
                stamps.append(message.timestamp()[1])
                keys.add(message.key() or b"")
                version = header_value(message, "model_version")
                if version:
                    versions[version] = versions.get(version, 0) + 1
                last = time.monotonic()
    finally:
        consumer.close()
    return Outputs(len(stamps), len(keys), np.asarray(stamps, dtype=np.int64), versions)


class LatencyReader:
    """A thread reading the predictions topic as it is written; per message: receive time, event time, version.

    Receive time is taken as soon as ``poll`` hands the first message over (the rest of an already-fetched
    batch is drained without waiting). Keys starting with ``skip_prefix`` (warm-up traffic) are ignored.
    """

    def __init__(self, client_config: dict[str, Any], topic: str, *, skip_prefix: bytes = b"warm-",
                 on_version: Callable[[str, float], None] | None = None) -> None:
        self._consumer = reader(client_config, topic)
        self._skip = skip_prefix
        self._stop = threading.Event()
        self._on_version = on_version
        self.received_ms: list[float] = []
        self.event_ms: list[int] = []
        self.versions: list[str] = []
        self.keys: set[bytes] = set()
        self.count = 0
        self.skipped = 0
        self._thread = threading.Thread(target=self._run, name="latency-reader", daemon=True)

    def start(self) -> LatencyReader:
        # The bench process holds MLflow's and pandas' objects too: a full collection walking them would pause
        # this thread and be measured as latency. Frozen, collections skip them (as the scorer does).
        gc.collect()
        gc.freeze()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._consumer.close()

    def _run(self) -> None:
        consumer = self._consumer
        find = _EVENT_TIME.search
        skip = self._skip
        received, events, versions, keys = self.received_ms, self.event_ms, self.versions, self.keys
        last_version = ""
        while not self._stop.is_set():
            first = consumer.poll(0.05)
            if first is None:
                continue
            now = time.time() * 1000
            messages = [first, *consumer.consume(5000, 0)]
            for message in messages:
                if message.error():
                    continue
                key = message.key() or b""
                if key.startswith(skip):
                    self.skipped += 1
                    continue
                value = message.value() or b""
                match = find(value)
                version = header_value(message, "model_version")
                if version != last_version:
                    if self._on_version is not None:
                        self._on_version(version, now)
                    last_version = version
                received.append(now)
                events.append(int(match.group(1)) if match else -1)
                versions.append(version)
                keys.add(key)
                self.count += 1

    def latencies_ms(self) -> np.ndarray:
        received = np.asarray(self.received_ms, dtype=np.float64)
        events = np.asarray(self.event_ms, dtype=np.float64)
        ok = events > 0
        return received[ok] - events[ok]


def header_value(message: Message, name: str) -> str:
    """The first header ``name`` of ``message`` as text ("" when absent)."""
    headers = message.headers()
    if not headers:
        return ""
    for key, value in headers.items() if isinstance(headers, dict) else headers:
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value or "")
    return ""


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def percentiles(values: np.ndarray) -> dict[str, float | int]:
    if len(values) == 0:
        return {"count": 0}
    p50, p90, p99, p999 = np.percentile(values, [50, 90, 99, 99.9])
    return {"count": int(len(values)), "p50_ms": round(float(p50), 1), "p90_ms": round(float(p90), 1),
            "p99_ms": round(float(p99), 1), "p99_9_ms": round(float(p999), 1),
            "max_ms": round(float(values.max()), 1), "mean_ms": round(float(values.mean()), 1)}
