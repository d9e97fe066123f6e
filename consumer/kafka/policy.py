"""How the scorer treats Kafka errors and failed batches.

The error-code tables: which produce errors no retry of the batch fixes, which fatal errors mean another
instance took over, which stop the scorer, and which may leave the transactional producer with a stale
coordinator. ``ClientErrors`` routes the clients' error callbacks (Kafka down, fatal); ``BatchFailures`` backs
off after a failed batch and stops the scorer on a batch the broker keeps refusing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException

from config.settings import Settings
from consumer.core.scoring import Incoming
from consumer.errors import BatchFailed, ScorerFatalError
from consumer.kafka.preflight import CREDENTIAL_SETTINGS
from consumer.state import ScorerState

logger = logging.getLogger(__name__)

# Produce errors that retrying the same batch cannot fix.
NON_RETRIABLE_PRODUCE_CODES = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
}
# A fatal transactional-producer error with one of these means another instance owns our transactional.id:
# this process must stop. Any other fatal producer error (e.g. INVALID_TXN_STATE after the coordinator timed out
# our transaction during a broker outage) is recovered by a new producer with the same id, which fences the old.
FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
# Errors that no retry will fix: wrong credentials, missing topics, no permission.
FATAL_CODES = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError._SSL,
    KafkaError.INVALID_CONFIG,
}

# Errors after which the transactional producer's coordinator view may be stale (see TransactionalProducer.abort).
COORDINATOR_TROUBLE_CODES = {
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.REQUEST_TIMED_OUT,
}

POISON_BATCH_ATTEMPTS = 5
"""The same batch failing this often for a reason no retry fixes (a message the broker refuses) is fatal."""
MAX_BACKOFF_SECONDS = 5.0


class ClientErrors:
    """The error callback of the scorer's consumer and producer (librdkafka calls it inside poll/consume, on the
    scoring thread): marks Kafka down while no broker answers, and keeps a fatal error for ``raise_if_fatal``."""

    def __init__(self, state: ScorerState, *, exactly_once: bool) -> None:
        self.state = state
        self.exactly_once = exactly_once
        self.fatal: str | None = None
        """The first fatal client error (``NAME: text``), raised by ``raise_if_fatal``."""

    def on_client_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() in FATAL_CODES:
            self.fatal = f"{error.name()}: {error.str()}"
        elif error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            # librdkafka repeats these on every reconnect attempt (several a second): warn once per outage/cause.
            if self.state.kafka_connected or self.state.kafka_error != error.str():
                logger.warning("Kafka: %s (retrying)", error.str())
            self.state.kafka_connected = False
            self.state.kafka_error = error.str()
        else:
            logger.warning("Kafka client error: %s", error.str())

    def on_producer_error(self, error: KafkaError) -> None:
        if error.fatal() and self.exactly_once and error.code() not in FENCED_CODES:
            # Recoverable by a new producer (see FENCED_CODES); the failing batch reports it and is rewound.
            logger.warning("transactional producer failed: %s (it will be replaced)", error.str())
            return
        self.on_client_error(error)

    def raise_if_fatal(self) -> None:
        if self.fatal:
            hint = ""
            if "AUTHENTICATION" in self.fatal.upper() or "SASL" in self.fatal.upper():
                hint = f": Kafka refused this client's credentials; check {CREDENTIAL_SETTINGS}"
            elif "FENCED" in self.fatal.upper():
                hint = (": another scorer took over this transactional id; give each instance its own "
                        "SCORER_INSTANCE_ID")
            raise ScorerFatalError(f"fatal Kafka error {self.fatal}{hint}")


class BatchFailures:
    """Failed batches in a row: the backoff before a rewound batch comes again, and the batch the broker keeps
    refusing (a poison batch), which is fatal."""

    def __init__(self, settings: Settings, state: ScorerState, stop: threading.Event) -> None:
        """:param stop: the scorer's stop event: the backoff waits on it, so stopping ends the wait."""
        self.settings = settings
        self.state = state
        self._stop = stop
        self.consecutive = 0
        """Batches failed in a row, for whatever reason (sets the backoff)."""
        self.non_retriable = 0
        """Of those, the last ones in a row that the broker refused (no retry fixes them)."""

    def succeeded(self) -> None:
        """A batch went through: the next failure is the first again."""
        self.consecutive = self.non_retriable = 0

    def after_failure(self, batch: list[Incoming], exc: BatchFailed) -> None:
        """Back off before the rewound batch comes again; a batch the broker keeps refusing is fatal."""
        self.state.metrics.transactions.labels(result="aborted").inc()
        self.consecutive += 1
        cause = exc.__cause__
        code = cause.args[0].code() if isinstance(cause, KafkaException) else None
        refused = code in NON_RETRIABLE_PRODUCE_CODES or any(
            name in str(exc) for name in ("MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE", "INVALID_RECORD"))
        self.non_retriable = self.non_retriable + 1 if refused else 0
        logger.warning("batch of %d at %s aborted and rewound (attempt %d): %s", len(batch), batch_position(batch),
                       self.consecutive, exc)
        if self.non_retriable >= POISON_BATCH_ATTEMPTS:
            raise ScorerFatalError(
                f"the broker refused the same batch {self.non_retriable} times ({exc}); nothing was "
                f"committed. If a dead letter is too large, raise max.message.bytes on "
                f"{self.settings.topics.dead_letter} or lower DLQ_MAX_VALUE_BYTES")
        self._stop.wait(min(MAX_BACKOFF_SECONDS, 0.05 * 2 ** self.consecutive))


def batch_position(batch: Sequence[Incoming]) -> str:
    """Where a batch starts, as log fields: its first record's topic[partition] and offset."""
    first = batch[0]
    return f'partition="{first.topic}[{first.partition}]" offset="{first.offset}"'
