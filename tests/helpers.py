"""Helpers for integration and e2e tests: produce, consume to the end, wait on conditions."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from config.settings import Settings
from producer.bad_records import BAD_RECORDS
from stack.processes import wait_until as wait_for  # noqa: F401 - re-exported for the tests
from training.data import load_housing

FEATURES = ("longitude", "latitude", "housing_median_age", "total_rooms", "total_bedrooms", "population",
            "households", "median_income", "ocean_proximity")


_ROWS: list[dict[str, Any]] | None = None


def housing_rows(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Real rows of data/housing.csv as record dicts (NaN total_bedrooms -> None), cycling if needed."""
    global _ROWS
    if _ROWS is None:
        frame = load_housing()
        rows = frame[list(FEATURES)].to_dict("records")
        for row in rows:
            if row["total_bedrooms"] != row["total_bedrooms"]:
                row["total_bedrooms"] = None
        _ROWS = rows
    return [dict(_ROWS[(start + i) % len(_ROWS)]) for i in range(count)]


@dataclass
class Produced:
    good_keys: list[str]
    bad_keys: list[str]
    rows: dict[str, dict[str, Any]]
    """Good record id -> the features sent."""


def produce_records(settings: Settings, count: int, *, bad_every: int = 0, topic: str | None = None,
                    start: int = 0, prefix: str | None = None) -> Produced:
    """Produce ``count`` JSON records (every ``bad_every``-th one a bad record from the corpus), keyed by id."""
    prefix = prefix or uuid.uuid4().hex[:6]
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 5, "enable.idempotence": True,
                         "message.max.bytes": 2_000_000})
    kinds = sorted(BAD_RECORDS)
    good, bad, sent_rows = [], [], {}
    for i, row in enumerate(housing_rows(count, start)):
        if bad_every and i % bad_every == bad_every - 1:
            kind = kinds[len(bad) % len(kinds)]
            key = f"bad-{kind}-{prefix}-{i}"
            producer.produce(topic or settings.topics.records, key=key.encode(), value=BAD_RECORDS[kind].value)
            bad.append(key)
        else:
            key = f"{prefix}-{i}"
            producer.produce(topic or settings.topics.records, key=key.encode(),
                             value=json.dumps({**row, "record_id": key, "event_time": int(time.time() * 1000)}))
            good.append(key)
            sent_rows[key] = row
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0, "records not delivered"
    return Produced(good, bad, sent_rows)


@dataclass
class Received:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int
    offset: int

    @property
    def header_map(self) -> dict[str, bytes]:
        return dict(self.headers)


def consume_all(bootstrap: str, topic: str, *, idle_seconds: float = 3.0, timeout: float = 60.0,
                expect: int | None = None, client_config: Mapping[str, Any] | None = None) -> list[Received]:
    """Read a topic from the start with read_committed until ``expect`` messages or ``idle_seconds`` of silence."""
    consumer = Consumer({**(client_config or {}), "bootstrap.servers": bootstrap,
                         "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    out: list[Received] = []
    deadline = time.monotonic() + timeout
    last_message = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if expect is not None and len(out) >= expect and time.monotonic() - last_message > 0.5:
                break
            if expect is None and time.monotonic() - last_message > idle_seconds and out:
                break
            if expect is None and not out and time.monotonic() - last_message > idle_seconds * 3:
                break
            for message in consumer.consume(1000, 0.2):
                if message.error():
                    continue
                out.append(Received(message.key(), message.value(), list(message.headers() or []),
                                    message.partition(), message.offset()))
                last_message = time.monotonic()
    finally:
        consumer.close()
    return out


def keys_of(messages: Iterable[Received]) -> list[str]:
    return [m.key.decode() if m.key else "" for m in messages]


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Sum of the group's committed offsets on ``topic`` (how far the scorers have got; 0 where none)."""
    # read_uncommitted: the last completed commit at once. A read_committed client asks for stable offsets and
    # waits while the scorer's next transaction holds offsets (under exactly-once it nearly always does).
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted"})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    except KafkaException as exc:
        # The broker (re)starting, or a killed scorer's open transaction holding its offsets unstable until
        # the broker aborts it (transaction.timeout.ms): "not known yet", the caller's deadline decides.
        if not exc.args[0].retriable() and exc.args[0].code() not in (KafkaError.NOT_COORDINATOR,
                                                                      KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                                                      KafkaError._TIMED_OUT):
            raise
        return -1
    finally:
        consumer.close()
    return sum(max(0, tp.offset) for tp in offsets)
