"""Broker-free stand-ins for the exactly-once side: a fake clock, and a transactional producer and a consumer that
behave as librdkafka's do across a broker outage.

``FakeTime`` replaces both the monotonic clock (``time.monotonic``, patched for the test) and the scorer's stop
event: waiting on it moves the clock and returns at once, so an outage of minutes takes microseconds and every wait
the code under test made is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from config.settings import Settings, load_settings

SPIN_GUARD = 5_000
"""A fake asked this often has been called in a loop that never waits: the test fails instead of hanging."""


def settings(**flat: Any) -> Settings:
    base = {"scorer.group_id": "g", "scorer.instance_id": "i1"}
    return load_settings({**base, **flat}, env={}, config_path=None)


def ignore(error: KafkaError) -> None:
    pass


class FakeTime:
    """The monotonic clock and the scorer's stop event in one: ``wait`` moves the clock instead of sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.waits: list[float] = []
        self.stopped = False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeTime:
        monkeypatch.setattr(time, "monotonic", self.monotonic)
        return self

    def monotonic(self) -> float:
        return self.now

    # --- the stop event's interface ----------------------------------------------------------------------
    def is_set(self) -> bool:
        return self.stopped

    def set(self) -> None:
        self.stopped = True

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None, "an unbounded wait on the stop event"
        self.waits.append(timeout)
        self.now += max(0.0, timeout)
        return self.stopped


def retriable(code: int, text: str) -> KafkaException:
    return KafkaException(KafkaError(code, text, retriable=True))


def fatal(code: int, text: str) -> KafkaException:
    return KafkaException(KafkaError(code, text, fatal=True))


TIMED_OUT = "Timed out waiting for operation to finish, retry call to resume"


class LibrdkafkaProducer:
    """A transactional producer as librdkafka behaves across an outage (rdkafka_txnmgr.c), on a ``FakeTime``.

    - While the broker is away (``now < away_until``) commit_transaction, abort_transaction and init_transactions
      block for their whole timeout, then raise a retriable _TIMED_OUT; the operation goes on in the background and
      stays the current call: only the same call may be made, any other answers _CONFLICT at once (retriable).
      A call made while the broker comes back completes then.
    - Once the broker is back, a commit whose transaction the coordinator timed out (``coordinator_timed_out``, set
      when the outage outlived transaction.timeout.ms) fails fatally with _FENCED ("fenced by a newer instance"),
      although no other instance exists; an abort of it succeeds.
    - ``fenced_by_other``: another instance with the same transactional.id took over: every call fails with _FENCED.
    - ``abort_conflicts``: abort_transaction answers _CONFLICT at once this many times first.
    """

    def __init__(self, clock: FakeTime, *, away_until: float = 0.0, coordinator_timed_out: bool = False,
                 fenced_by_other: bool = False, abort_conflicts: int = 0, name: str = "p0") -> None:
        self.clock = clock
        self.away_until = away_until
        self.coordinator_timed_out = coordinator_timed_out
        self.fenced_by_other = fenced_by_other
        self.abort_conflicts = abort_conflicts
        self.name = name
        self.current: str | None = None
        """The transactional call in progress inside librdkafka (txn_curr_api), kept across a retriable timeout."""
        self.calls: list[str] = []
        self.produced: list[bytes] = []
        self.probe: Callable[[], object] | None = None
        """Called at every call (a test's look at the scorer's state while the producer is in use)."""

    # --- helpers ----------------------------------------------------------------------------------------------
    def _called(self, name: str) -> None:
        self.calls.append(name)
        if self.probe is not None:
            self.probe()
        assert len(self.calls) < SPIN_GUARD, f"{name} called {len(self.calls)} times with no wait between: a spin"
        if self.fenced_by_other:
            raise fatal(KafkaError._FENCED, "Failed to end transaction: Local: This instance has been fenced by a "
                                            "newer instance")

    def _enter(self, name: str) -> None:
        if self.current is not None and self.current != name:
            raise retriable(KafkaError._CONFLICT, f"Conflicting {self.current} API call is already in progress")
        self.current = name

    def _block(self, timeout: float) -> None:
        """Block until the broker answers or ``timeout`` passes; a retriable timeout if it did not answer."""
        if self.clock.now < self.away_until:
            self.clock.now = min(self.away_until, self.clock.now + timeout)
            if self.clock.now < self.away_until:
                raise retriable(KafkaError._TIMED_OUT, TIMED_OUT)

    # --- the producer's interface -----------------------------------------------------------------------------
    def init_transactions(self, timeout: float) -> None:
        self._called("init")
        self._enter("init_transactions")
        self._block(timeout)
        self.current = None

    def begin_transaction(self) -> None:
        self._called("begin")

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, **_: Any) -> None:
        self.produced.append(value)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float) -> None:
        self._called("send_offsets")

    def commit_transaction(self, timeout: float) -> None:
        self._called("commit")
        self._enter("commit_transaction")
        self._block(timeout)
        self.current = None
        if self.coordinator_timed_out:
            raise fatal(KafkaError._FENCED, "Failed to end transaction: Local: This instance has been fenced by a "
                                            "newer instance")
        self.calls.append("committed")

    def abort_transaction(self, timeout: float) -> None:
        self._called("abort")
        if self.abort_conflicts:
            self.abort_conflicts -= 1
            raise retriable(KafkaError._CONFLICT, "Conflicting commit_transaction API call is already in progress")
        self._enter("abort_transaction")
        self._block(timeout)
        self.current = None
        self.calls.append("aborted")


class Replacements:
    """Stands in for ``confluent_kafka.Producer`` in consumer.kafka.producer: every new producer is a
    ``LibrdkafkaProducer`` on the same clock and broker."""

    def __init__(self, clock: FakeTime, **options: Any) -> None:
        self.clock = clock
        self.options = options
        self.made: list[LibrdkafkaProducer] = []

    def __call__(self, config: dict[str, Any]) -> LibrdkafkaProducer:
        made = LibrdkafkaProducer(self.clock, name=f"p{len(self.made) + 1}", **self.options)
        self.made.append(made)
        return made


class CommittedConsumer:
    """A consumer whose committed offsets are the broker's (``committed_offsets``; absent: none committed), whose
    ``committed()`` times out ``committed_timeouts`` times first, and whose ``seek`` fails ``seek_failures`` times."""

    def __init__(self, assigned: list[tuple[str, int]], committed_offsets: dict[tuple[str, int], int],
                 clock: FakeTime | None = None, *, committed_timeouts: int = 0, seek_failures: int = 0) -> None:
        self._assigned = [TopicPartition(t, p) for t, p in assigned]
        self.committed_offsets = committed_offsets
        self.clock = clock
        self.committed_timeouts = committed_timeouts
        self.seek_failures = seek_failures
        self.committed_calls = 0
        self.seeks: list[tuple[str, int, int]] = []

    def assignment(self) -> list[TopicPartition]:
        return list(self._assigned)

    def consumer_group_metadata(self) -> object:
        return object()

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        self.committed_calls += 1
        assert self.committed_calls < SPIN_GUARD, "committed() called in a loop that never waits"
        if self.committed_timeouts:
            self.committed_timeouts -= 1
            if self.clock is not None:
                self.clock.now += timeout
            # As confluent-kafka raises it: a plain error code, retriable() False.
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get committed offsets: Local: Timed out"))
        return [TopicPartition(tp.topic, tp.partition, self.committed_offsets.get((tp.topic, tp.partition), -1001))
                for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        if self.seek_failures:
            self.seek_failures -= 1
            raise KafkaException(KafkaError(KafkaError._STATE, "Failed to seek to offset: Local: Erroneous state"))
        self.seeks.append((tp.topic, tp.partition, tp.offset))
