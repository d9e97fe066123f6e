"""consumer.kafka.producer without a broker: a batch's outputs as produced (dead letters truncated), and the
transactional producer across a broker outage on a fake clock (resumed commits, backed-off aborts, fencing,
replacements and the cap on producers stuck inside librdkafka)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException

from config.settings import Settings, load_settings
from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchResult, Incoming, Rejected, Scored
from consumer.errors import ScorerFatalError, TransactionStuck
from consumer.kafka import policy
from consumer.kafka import producer as producer_module
from consumer.kafka.commit import ExactlyOnceCommit
from consumer.kafka.producer import OutputProducer, TransactionalProducer
from consumer.state import ScorerState
from tests.unit.consumer.kafka.txn_fakes import (
    TIMED_OUT,
    CommittedConsumer,
    FakeTime,
    LibrdkafkaProducer,
    Replacements,
    fatal,
    retriable,
)
from tests.unit.consumer.kafka.txn_fakes import settings as txn_settings


def settings(**flat: Any) -> Settings:
    base = {"scorer.group_id": "g", "scorer.instance_id": "i1"}
    return load_settings({**base, **flat}, env={}, config_path=None)


def ignore(error: KafkaError) -> None:
    pass


class FakeProducer:
    def __init__(self, full_times: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.full_times = full_times
        self.polls = 0

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                **_: Any) -> None:
        if self.full_times:
            self.full_times -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value, headers))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def test_oversized_dead_letter_is_truncated_and_says_from_what_size() -> None:
    fake = FakeProducer(full_times=2)
    producer = OutputProducer(settings(**{"scorer.dlq_max_value_bytes": 10}), ignore, client=fake)  # type: ignore[arg-type]
    source = Incoming(b"k", b"{}", "t", 0, 1)
    result = BatchResult([], [Rejected(b"k", b"x" * 25, [("dlq.reason", b"too_large")], source, "too_large",
                                       "decode", "big"),
                              Rejected(b"k2", b"small", [], source, "malformed_json", "decode", "bad")],
                         None, np.empty(0))
    producer.produce_all(result, "pred", "dlq")
    assert fake.polls == 2  # a full local queue is drained, not an error
    (topic, _, value, headers), (_, _, small, small_headers) = fake.sent
    assert topic == "dlq" and value == b"x" * 10 and ("dlq.truncated_from", b"25") in headers
    assert small == b"small" and small_headers == []



class FullMidway(FakeProducer):
    """A local queue that is full at the third message (twice), then drains."""

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                **_: Any) -> None:
        if len(self.sent) == 2 and self.full_times:
            self.full_times -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value, headers))


@pytest.mark.parametrize("on_delivery", [None, lambda error, message: None])
def test_predictions_go_on_from_where_a_full_queue_stopped_them(on_delivery: Any) -> None:
    fake = FullMidway(full_times=2)
    producer = OutputProducer(settings(), ignore, client=fake)  # type: ignore[arg-type]
    source = Incoming(b"k", b"{}", "t", 0, 1)
    scored = [Scored(b"k%d" % i, b"v%d" % i, [("format", b"json")], source, f"r{i}", float(i)) for i in range(5)]
    producer.produce_all(BatchResult(scored, [], None, np.arange(5.0)), "pred", "dlq", on_delivery=on_delivery)
    assert fake.polls == 2
    assert [(topic, key, value) for topic, key, value, _ in fake.sent] == [("pred", b"k%d" % i, b"v%d" % i)
                                                                          for i in range(5)]


# --- the transactional producer across a broker outage (issue 12 items 2 and 12) ---------------------------------
# On a FakeTime: an outage of minutes runs in microseconds, and every wait the producer made is recorded.

def transactional(clock: FakeTime, client: LibrdkafkaProducer) -> tuple[TransactionalProducer, ScorerState]:
    """A TransactionalProducer wired as the scoring loop wires it (its commit strategy reports to the state)."""
    s = txn_settings()
    state = ScorerState(s, model=ModelHandle(model=None, name="m", version="1", source="registry"))  # type: ignore[arg-type]
    state.consumer_running = state.assignment_received = state.kafka_connected = True  # ready, until Kafka goes
    txn = TransactionalProducer(s, ignore, clock, client=client)  # type: ignore[arg-type]
    ExactlyOnceCommit(s, state, CommittedConsumer([("t", 0)], {}), txn,  # type: ignore[arg-type]
                      on_done=lambda *_: None, on_failure=lambda *_: None)
    return txn, state


def replacements(state: ScorerState, reason: str) -> float:
    value = state.metrics.registry.get_sample_value("housing_scorer_producer_replacements_total", {"reason": reason})
    return value or 0.0


def kafka_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("consumer.kafka")]


def assert_backed_off(clock: FakeTime) -> None:
    """Every wait between attempts within the cap, doubling from the first up to it."""
    assert clock.waits, "retried without ever waiting"
    assert all(0 <= w <= policy.BACKOFF_MAX_SECONDS for w in clock.waits), clock.waits


def test_a_commit_the_broker_does_not_answer_is_resumed_for_the_whole_outage_then_completes(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeTime().install(monkeypatch)
    outage = 600.0  # ten minutes: past transaction.timeout.ms, the old 5 x 30 s of commit retries and 120 s of abort
    fake = LibrdkafkaProducer(clock, away_until=clock.now + outage)
    txn, state = transactional(clock, fake)
    seen: list[tuple[bool, bool, str | None]] = []
    fake.probe = lambda: seen.append((state.kafka_connected, state.ready, state.kafka_error))
    assert state.ready
    with caplog.at_level(logging.INFO):
        txn.commit_transaction()
    # Resumed (librdkafka keeps the commit going; abort would only answer _CONFLICT), never aborted, and it went
    # through once the broker answered.
    assert "abort" not in fake.calls and fake.calls[-1] == "committed"
    assert fake.calls.count("commit") <= outage / policy.BACKOFF_MAX_SECONDS + 10, fake.calls
    assert_backed_off(clock)
    # While the broker was away the state said so (/health: unhealthy after a minute, with the reason; /ready 503).
    assert any(connected is False and ready is False and error and "commit_transaction" in error
               for connected, ready, error in seen), seen
    assert state.kafka_connected is True and state.kafka_error is None and state.ready
    # One line when Kafka went away, one reminder at most every OUTAGE_REMINDER_SECONDS, one when it came back.
    first, *reminders, last = kafka_log_lines(caplog)
    assert "does not answer" in first and "answers again" in last, (first, last)
    assert 1 <= len(reminders) <= outage // policy.OUTAGE_REMINDER_SECONDS, reminders
    assert all("still does not answer" in line for line in reminders), reminders


def test_an_abort_the_broker_does_not_answer_is_retried_past_two_minutes_backing_off(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeTime().install(monkeypatch)
    fake = LibrdkafkaProducer(clock, away_until=clock.now + 600)
    made = Replacements(clock)
    monkeypatch.setattr(producer_module, "Producer", made)
    txn, state = transactional(clock, fake)
    failed = retriable(KafkaError._TIMED_OUT, "Failed to add offsets to transaction: Local: Timed out")
    with caplog.at_level(logging.INFO):
        txn.abort(failed)  # today: ScorerFatalError "could not abort a transaction for 120 s" (exit code 2)
    assert fake.calls[-1] == "aborted" and fake.calls.count("abort") <= 600 / policy.BACKOFF_MAX_SECONDS + 10
    assert_backed_off(clock)
    # A timeout may leave librdkafka with a stale coordinator: a new producer (same transactional.id) follows.
    assert [p.calls for p in made.made] == [["init"]] and txn.client is made.made[0]
    assert replacements(state, "stale_coordinator") == 1
    assert len(kafka_log_lines(caplog)) <= 2 + 600 // policy.OUTAGE_REMINDER_SECONDS + 1, kafka_log_lines(caplog)
    assert state.kafka_connected is True


@pytest.mark.parametrize("code", [KafkaError._TIMED_OUT, KafkaError._PREV_IN_PROGRESS])
def test_an_abort_failing_at_once_backs_off_between_attempts_instead_of_spinning(
        monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    clock = FakeTime().install(monkeypatch)
    fake = LibrdkafkaProducer(clock)
    failures = 40
    calls = {"n": 0}
    real_abort = fake.abort_transaction

    def abort_failing_at_once(timeout: float) -> None:
        calls["n"] += 1
        if calls["n"] <= failures:
            fake.calls.append("abort")
            raise retriable(code, "retriable at once")
        real_abort(timeout)

    fake.abort_transaction = abort_failing_at_once  # type: ignore[method-assign]
    txn, _ = transactional(clock, fake)
    txn.abort(KafkaException(KafkaError(KafkaError._INCONSISTENT, "1 message failed delivery",
                                        txn_requires_abort=True)))
    assert fake.calls[-1] == "aborted" and calls["n"] == failures + 1
    # One wait after each failed attempt: 0.5 s doubling, capped.
    assert len(clock.waits) == failures, clock.waits
    assert clock.waits[:4] == [0.5, 1.0, 2.0, 4.0] and max(clock.waits) == policy.BACKOFF_MAX_SECONDS


def test_an_abort_that_conflicts_with_a_commit_in_progress_resumes_the_commit_without_spinning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime().install(monkeypatch)
    # A commit timed out during the outage and is still in progress inside librdkafka: abort answers _CONFLICT at
    # once. Once the broker answers, the coordinator has timed the transaction out: the commit is "fenced".
    fake = LibrdkafkaProducer(clock, away_until=clock.now + 200, coordinator_timed_out=True)
    fake.current = "commit_transaction"
    made = Replacements(clock)
    monkeypatch.setattr(producer_module, "Producer", made)
    txn, state = transactional(clock, fake)
    txn.abort(retriable(KafkaError._TIMED_OUT, TIMED_OUT))  # today: a spin on _CONFLICT (the fake stops it)
    assert fake.calls.count("abort") <= 2 and fake.calls.count("commit") <= 200 / 10 + 5, fake.calls
    assert_backed_off(clock)
    # Fenced after an outage longer than the transaction timeout is the coordinator's timeout, not another
    # instance: a new producer, no exit.
    assert [p.calls for p in made.made] == [["init"]]
    assert replacements(state, "transaction_timed_out") == 1


def test_fenced_by_another_instance_stops_the_scorer_saying_what_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime().install(monkeypatch)
    fake = LibrdkafkaProducer(clock, fenced_by_other=True)
    txn, _ = transactional(clock, fake)
    fenced = fatal(KafkaError._FENCED, "This instance has been fenced by a newer instance")
    with pytest.raises(ScorerFatalError, match="SCORER_INSTANCE_ID"):
        txn.abort(fenced)


def test_a_replacement_during_an_outage_waits_for_the_broker_instead_of_giving_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime().install(monkeypatch)
    made = Replacements(clock, away_until=clock.now + 600)
    monkeypatch.setattr(producer_module, "Producer", made)
    txn, state = transactional(clock, LibrdkafkaProducer(clock))
    txn.replace(KafkaError(KafkaError.INVALID_TXN_STATE, "txn timed out", fatal=True))  # today: fatal after 120 s
    [new] = made.made
    assert new.calls.count("init") <= 600 / policy.BACKOFF_MAX_SECONDS + 10 and txn.client is new
    assert_backed_off(clock)
    assert replacements(state, "fatal") == 1


def test_producers_stuck_inside_librdkafka_are_capped_and_every_replacement_is_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime().install(monkeypatch)
    made = Replacements(clock)
    monkeypatch.setattr(producer_module, "Producer", made)
    txn, state = transactional(clock, LibrdkafkaProducer(clock))
    cap = producer_module.MAX_ABANDONED_PRODUCERS
    for _ in range(cap):
        txn.abandon(TransactionStuck("producer call did not return within 40s"))
    assert txn.abandoned_clients == cap and len(made.made) == cap
    assert replacements(state, "stuck") == cap
    # One more would pile up without end: the scorer stops, saying why and what to do.
    with pytest.raises(ScorerFatalError, match=f"{cap + 1} transactional producers .*stuck.*[Rr]estart"):
        txn.abandon(TransactionStuck("producer call did not return within 40s"))
    assert len(made.made) == cap


def test_stopping_during_an_outage_leaves_the_transaction_to_the_broker_without_a_fatal_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime().install(monkeypatch)
    fake = LibrdkafkaProducer(clock, away_until=clock.now + 3600)
    txn, _ = transactional(clock, fake)
    fake.probe = lambda: clock.set() if fake.calls.count("abort") == 3 else None  # SIGTERM during the third try
    txn.abort(retriable(KafkaError._TIMED_OUT, TIMED_OUT))  # today: ScorerFatalError, exit code 2
    assert fake.calls.count("abort") == 3 and clock.now < 1000 + 3600  # stopped without waiting for the broker
