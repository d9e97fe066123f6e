"""consumer.kafka.policy: failed batches (backoff, poison batch), client error routing, batch positions."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from config.settings import Settings, load_settings
from consumer.core.scoring import Incoming
from consumer.errors import BatchFailed, ScorerFatalError
from consumer.kafka import policy
from consumer.kafka.policy import BatchFailures, ClientErrors
from consumer.state import ScorerState


def settings(**flat: Any) -> Settings:
    base = {"scorer.group_id": "g", "scorer.instance_id": "i1"}
    return load_settings({**base, **flat}, env={}, config_path=None)


def incoming(partition: int, offset: int, topic: str = "t") -> Incoming:
    return Incoming(b"k", b"{}", topic, partition, offset)


def test_batch_position_names_the_first_record() -> None:
    assert policy.batch_position([incoming(1, 42), incoming(0, 3)]) == 'partition="t[1]" offset="42"'


def refused() -> BatchFailed:
    try:
        raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
    except KafkaException as exc:
        try:
            raise BatchFailed("refused") from exc
        except BatchFailed as failed:
            return failed


def stopped_failures() -> BatchFailures:
    s = settings()
    stop = threading.Event()
    stop.set()  # the backoff waits on the stop event: returns at once
    return BatchFailures(s, ScorerState(s), stop)


def test_a_batch_the_broker_keeps_refusing_is_fatal_but_transient_failures_are_not() -> None:
    failures = stopped_failures()
    batch = [incoming(0, 1)]
    for _ in range(20):
        failures.after_failure(batch, BatchFailed("timed out"))
    assert failures.consecutive == 20 and failures.non_retriable == 0
    for _ in range(policy.POISON_BATCH_ATTEMPTS - 1):
        failures.after_failure(batch, refused())
    with pytest.raises(ScorerFatalError, match="refused the same batch"):
        failures.after_failure(batch, refused())


def client_errors(*, exactly_once: bool = True) -> ClientErrors:
    s = settings()
    return ClientErrors(ScorerState(s), exactly_once=exactly_once)


def test_all_brokers_down_marks_kafka_down_and_fatal_errors_stop_with_a_hint() -> None:
    errors = client_errors()
    errors.state.kafka_connected = True
    errors.on_client_error(KafkaError(KafkaError._TRANSPORT, "one connection failed"))
    assert errors.state.kafka_connected is True  # one connection, not Kafka: /ready stays 200
    errors.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "broker down"))
    assert errors.state.kafka_connected is False and errors.state.kafka_error == "broker down"
    assert not errors.state.ready
    errors.raise_if_fatal()  # transient: nothing raised
    errors.on_client_error(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True))
    with pytest.raises(ScorerFatalError, match="SCORER_INSTANCE_ID"):
        errors.raise_if_fatal()


def test_transactional_producer_fatal_errors_are_left_to_the_batch_to_recover() -> None:
    errors = client_errors()
    errors.on_producer_error(KafkaError(KafkaError.INVALID_TXN_STATE, "txn timed out", fatal=True))
    errors.raise_if_fatal()  # recovered by a new producer, not fatal
    # Fenced too: after a broker outage it is the coordinator timing the transaction out, and the failing
    # transactional call tells that from another instance taking over (TransactionalProducer.abort).
    errors.on_producer_error(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True))
    errors.raise_if_fatal()
    idempotent = client_errors(exactly_once=False)
    idempotent.on_producer_error(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True))
    with pytest.raises(ScorerFatalError):
        idempotent.raise_if_fatal()
