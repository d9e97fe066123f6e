"""Helpers for integration and e2e tests: produce, consume to the end, wait on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from config.settings import Settings
from producer.bad_records import BAD_RECORDS
from stack.processes import StackError
from training.data import load_housing

FEATURES = ("longitude", "latitude", "housing_median_age", "total_rooms", "total_bedrooms", "population",
            "households", "median_income", "ocean_proximity")


_ROWS: list[dict[str, Any]] | None = None
T = TypeVar("T")


@contextlib.contextmanager
def unused_port() -> Iterator[int]:
    """A port that nothing listens on while the block runs: this process holds it bound without listening, so
    no one else can take it and every connection to it is refused (unlike a ``free_port()`` let go at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def start_retrying_busy_ports(start: Callable[[], T], attempts: int = 4) -> T:
    """``start()`` (which picks its ports with ``free_port()`` each call), again when a port it picked was taken
    before its process bound it: the check-then-bind race of a chosen port, retried instead of failing the run."""
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except StackError as exc:
            if attempt == attempts or "already in use" not in str(exc).lower():
                raise
    raise AssertionError("unreachable")


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, LookupError, OSError, KafkaException)
"""What a condition may raise while the thing it looks at is not there yet: a timed-out call, a key or index
not present yet, a refused or reset connection, a broker that does not answer yet."""


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``condition`` until it is true (True) or ``timeout`` seconds pass (False).

    A condition that raises one of TRANSIENT_ERRORS counts as "not yet"; if it still raises at the deadline, that
    last error is raised (the caller sees why it never held). Any other error is a bug and raised at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        last_error: BaseException | None = None
        try:
            if condition():
                return True
        except TRANSIENT_ERRORS as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            if last_error is not None:
                raise last_error
            return False
        time.sleep(interval)


async def eventually(condition: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    """``wait_for`` on an event loop: the condition may be a coroutine function, and the loop runs between tries
    (an admin app or a supervisor under test lives on it)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome or time.monotonic() >= deadline:
            return bool(outcome)
        await asyncio.sleep(interval)


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


class ReadError(AssertionError):
    """A test reader met a consumer error (anything but the end of a partition): the read is not trusted."""


def read_to_end(bootstrap: str, topic: str, *, until: Callable[[list[Received]], bool] | None = None,
                timeout: float = 60.0, client_config: Mapping[str, Any] | None = None) -> list[Received]:
    """Every committed message of ``topic`` (read_committed, from the start), up to the high watermarks of all its
    partitions as they were when called: the exact "what came out", for "exactly N" and "none" assertions.

    It assigns the partitions itself (no group join to wait for) and stops once each partition's position has
    reached its high watermark; the watermark counts transaction markers and aborted records, which
    read_committed never returns, so the position (which moves past them) decides, not a message count. An open
    transaction holds the reader until it ends (commit or abort), so outputs still in flight are waited for.

    :param until: taken again after each complete read: the watermarks are re-read and the read continues until
        ``until(messages)`` holds (then it returns everything up to the watermarks of that moment, so what was
        already written beyond the condition is seen too) or ``timeout`` passes (then what was read, for the
        caller's exact assertion to show the difference).
    :raises ReadError: the consumer reported an error, or the watermarks were not reached within ``timeout``.
    """
    config = {**(client_config or {}), "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
              "enable.auto.commit": False, "isolation.level": "read_committed", "enable.partition.eof": True}
    consumer = Consumer(config)
    # A read_committed client's watermarks stop at the last stable offset (before any open transaction), so
    # the high watermarks come from a read_uncommitted client: open transactions are waited for, not missed.
    watermarks = Consumer({**config, "isolation.level": "read_uncommitted"})
    deadline = time.monotonic() + timeout
    out: list[Received] = []
    try:
        metadata = consumer.list_topics(topic, timeout=max(1.0, deadline - time.monotonic()))
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            raise ReadError(f"topic {topic} cannot be read: {described.error if described else 'not found'}")
        partitions = sorted(described.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while True:
            ends = {p: _watermarks(watermarks, topic, p, deadline) for p in partitions}
            _read_until_positions(consumer, topic, ends, out, deadline)
            if until is None or until(out) or time.monotonic() >= deadline:
                return out
            time.sleep(0.1)  # written since? look again
    finally:
        watermarks.close()
        consumer.close()


def _watermarks(consumer: Consumer, topic: str, partition: int, deadline: float) -> tuple[int, int]:
    """(low, high) of one partition; retried while its leader is not known yet (a topic just created)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in (
                KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT)
            if not transient or time.monotonic() >= deadline:
                raise ReadError(f"watermarks of {topic}[{partition}]: {error}") from exc
            time.sleep(0.1)


def _read_until_positions(consumer: Consumer, topic: str, ends: Mapping[int, tuple[int, int]],
                          out: list[Received], deadline: float) -> None:
    """Consume into ``out`` until every partition's position is at least its high watermark in ``ends``."""
    reached: dict[int, int] = {p: low for p, (low, high) in ends.items()}
    # A partition is done once its position (or the offset an end-of-partition event names) is at its end.
    pending = {p for p, (low, high) in ends.items() if high > low}
    while pending:
        for message in consumer.consume(1000, 0.2):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    reached[message.partition()] = max(reached[message.partition()], message.offset())
                    continue
                raise ReadError(f"reading {topic}: {error}")
            out.append(Received(message.key(), message.value(), list(message.headers() or []),
                                message.partition(), message.offset()))
            reached[message.partition()] = max(reached[message.partition()], message.offset() + 1)
        for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
            if tp.error is not None:
                raise ReadError(f"position of {topic}[{tp.partition}]: {tp.error}")
            reached[tp.partition] = max(reached[tp.partition], tp.offset)
        pending = {p for p in pending if reached[p] < ends[p][1]}
        if pending and time.monotonic() >= deadline:
            raise ReadError(f"{topic}: not at the high watermark in time (an open transaction?): "
                            + ", ".join(f"[{p}] at {reached[p]} of {ends[p][1]}" for p in sorted(pending))
                            + f"; {len(out)} messages read")


def consume_all(bootstrap: str, topic: str, *, idle_seconds: float = 3.0, timeout: float = 60.0,
                expect: int | None = None, client_config: Mapping[str, Any] | None = None) -> list[Received]:
    """``read_to_end`` until at least ``expect`` messages are there (then all up to the watermarks, so extras
    show), or, without ``expect``, until the topic has not grown for ``idle_seconds``."""
    if expect is not None:
        return read_to_end(bootstrap, topic, until=lambda out: len(out) >= expect, timeout=timeout,
                           client_config=client_config)
    seen = [-1, time.monotonic()]

    def quiet(out: list[Received]) -> bool:
        if len(out) != seen[0]:
            seen[:] = [len(out), time.monotonic()]
            return False
        return time.monotonic() - seen[1] >= idle_seconds

    return read_to_end(bootstrap, topic, until=quiet, timeout=timeout, client_config=client_config)


def keys_of(messages: Iterable[Received]) -> list[str]:
    return [m.key.decode() if m.key else "" for m in messages]


def committed_total(bootstrap: str, group: str, topic: str, partitions: int, *,
                    client_config: Mapping[str, Any] | None = None) -> int:
    """Sum of the group's committed offsets on ``topic`` (how far the scorers have got; 0 where none)."""
    # read_uncommitted: the last completed commit at once. A read_committed client asks for stable offsets and
    # waits while the scorer's next transaction holds offsets (under exactly-once it nearly always does).
    consumer = Consumer({**(client_config or {}), "bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
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


def scorer_env(settings: Settings, instance_id: str, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m consumer`` subprocess on these settings' broker, registry and topics
    (the parent's own TOPIC_/MLFLOW_/KAFKA_/SCORER_ variables left out); ``extra`` on top."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TOPIC_", "MLFLOW_", "KAFKA_", "SCORER_"))},
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "MLFLOW_MODEL_NAME": settings.model.name,
        "MODEL_PATH": settings.model.fallback_path,
        "MLFLOW_RELOAD_INTERVAL": "300",
        "TOPIC_RECORDS": settings.topics.records,
        "TOPIC_PREDICTIONS": settings.topics.predictions,
        "TOPIC_DEAD_LETTER": settings.topics.dead_letter,
        "TOPIC_MODEL_UPDATES": settings.topics.model_updates,
        "TOPIC_SCORER_STATUS": settings.topics.scorer_status,
        "SCORER_GROUP_ID": settings.scorer.group_id,
        "SCORER_INSTANCE_ID": instance_id,
        "BATCH_MAX_WAIT_MS": "20",
        "LOG_LEVEL": "INFO",
        **extra,
    }
