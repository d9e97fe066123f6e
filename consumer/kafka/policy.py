"""How the scorer treats Kafka errors, failed batches and a broker that does not answer.

The error-code tables: which produce errors no retry of the batch fixes, which fatal errors mean another
instance took over, which stop the scorer, and which may leave the transactional producer with a stale
coordinator. ``ClientErrors`` routes the clients' error callbacks (Kafka down, fatal); ``BatchFailures`` backs
off after a failed batch and stops the scorer on a batch the broker keeps refusing. ``RetryClock``, ``Backoff``
and ``BrokerOutage`` are how the exactly-once side rides out an outage of any length: calls retried with a capped
back-off, one log line per change (away, still away now and then, back), and the state /health and /ready read.
"""

from __future__ import annotations

import logging
import threading
import time
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

# committed() and OffsetFetch errors that mean "not now" (coordinator away, moving or loading, a transaction's
# offsets not settled yet): retried. confluent-kafka raises them as plain codes, with retriable() False.
RETRIABLE_OFFSET_CODES = COORDINATOR_TROUBLE_CODES | {
    KafkaError._TIMED_OUT_QUEUE,
    KafkaError._WAIT_COORD,
    KafkaError.UNSTABLE_OFFSET_COMMIT,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.NETWORK_EXCEPTION,
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
        self._last_transient: str | None = None

    def on_client_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() in FATAL_CODES:
            self.fatal = f"{error.name()}: {error.str()}"
        elif error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            # librdkafka repeats these on every reconnect attempt (several a second): warn once per outage/cause.
            all_down = error.code() == KafkaError._ALL_BROKERS_DOWN
            if (all_down and self.state.kafka_connected) or self._last_transient != error.str():
                logger.warning("Kafka: %s (retrying)", error.str())
            self._last_transient = error.str()
            if all_down:
                # Kafka unreachable (/health, /ready). One connection failing (_TRANSPORT) is not: with several
                # brokers the others answer, and an idle scorer would stay "down" until its next batch.
                self.state.kafka_connected = False
                self.state.kafka_error = error.str()
        else:
            logger.warning("Kafka client error: %s", error.str())

    def on_producer_error(self, error: KafkaError) -> None:
        if error.fatal() and self.exactly_once:
            # The transactional call that fails with it decides (TransactionalProducer.abort): a new producer, or
            # stop when another instance took over. Fenced right after a broker outage is the coordinator having
            # timed the transaction out, not another instance, so fencing alone must not stop the scorer here.
            logger.warning("transactional producer failed: %s (it will be replaced, or the scorer stops if "
                           "another instance took over)", error.str())
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


# --- riding out a broker that does not answer --------------------------------------------------------------------
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
"""Between attempts of a call the broker does not answer: 0.5 s doubling to 30 s, counted from one attempt's start to
the next (an attempt that blocked for its own timeout waits that much less). An outage of any length costs one call
per 30 s at most, and a call that fails at once never spins."""
OUTAGE_REMINDER_SECONDS = 300.0
"""While Kafka stays away, a reminder in the log at most this often (one line when it goes, one when it is back)."""


class RetryClock:
    """Time as the retry loops see it: ``now`` (monotonic) and ``wait``, which the scorer's stop ends at once."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def now(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` (none if not positive) or until the scorer stops; True when stopping."""
        return self._stop.wait(max(0.0, seconds)) if seconds > 0 else self._stop.is_set()


class Backoff:
    """Capped exponential back-off between the attempts of one call: ``attempt()`` before each, ``wait()`` after
    each that failed (the rest of the current interval, then the interval doubles up to ``cap``)."""

    def __init__(self, clock: RetryClock, first: float = BACKOFF_FIRST_SECONDS,
                 cap: float = BACKOFF_MAX_SECONDS) -> None:
        self.clock = clock
        self._interval = first
        self._cap = cap
        self._started = clock.now()

    def attempt(self) -> None:
        self._started = self.clock.now()

    def wait(self) -> bool:
        """Wait until the current interval since the attempt started is over; True when the scorer is stopping."""
        stopping = self.clock.wait(self._interval - (self.clock.now() - self._started))
        self._interval = min(self._cap, self._interval * 2)
        return stopping


class BrokerOutage:
    """Kafka not answering the exactly-once side's calls (commit, abort, a new producer's init, committed offsets),
    as the operator sees it: one warning when it goes away, one at most every OUTAGE_REMINDER_SECONDS while it
    stays away, one when it answers again. Meanwhile ``kafka_connected`` is False and ``kafka_error`` says which
    call waits and why: /health turns unhealthy (after KAFKA_UNHEALTHY_SECONDS) with that reason, /ready 503.

    Called from the scoring thread and the producer's worker thread (one at a time in practice; locked anyway).
    """

    def __init__(self, clock: RetryClock, state: ScorerState | None = None) -> None:
        self.clock = clock
        self.state = state
        """Where /health and /ready look; None until the commit strategy attaches it."""
        self.since: float | None = None
        """When the current outage was first seen (monotonic); None while Kafka answers."""
        self._next_reminder = 0.0
        self._lock = threading.Lock()

    @property
    def away(self) -> bool:
        return self.since is not None

    def unanswered(self, what: str, error: KafkaError) -> None:
        """``what`` failed with a retriable ``error`` and will be tried again."""
        reason = f"{what} waits for Kafka: {error.str()}"
        with self._lock:
            now = self.clock.now()
            if self.since is None:
                self.since, self._next_reminder = now, now + OUTAGE_REMINDER_SECONDS
                logger.warning("Kafka does not answer (%s); retrying until it does, at most every %.0fs; nothing is "
                               "committed meanwhile", reason, BACKOFF_MAX_SECONDS)
            elif now >= self._next_reminder:
                self._next_reminder = now + OUTAGE_REMINDER_SECONDS
                logger.warning("Kafka still does not answer after %.0fs (%s); still retrying", now - self.since,
                               reason)
            if self.state is not None:
                self.state.kafka_connected = False
                self.state.kafka_error = reason

    def answered(self) -> None:
        """A call went through: if Kafka was away, it is back."""
        if self.since is None:
            return
        with self._lock:
            if self.since is None:
                return
            logger.warning("Kafka answers again after %.0fs; scoring resumes", self.clock.now() - self.since)
            self.since = None
            if self.state is not None:
                self.state.kafka_connected = True
                self.state.kafka_error = None
