"""The scorer's output producer, and the transactional producer's recovery.

``OutputProducer`` produces a batch's predictions and dead letters (at-least-once uses it as it is).
``TransactionalProducer`` adds what exactly-once needs: ``init_transactions``, a worker thread for the blocking
transactional calls (``ProducerWorker``: a call stuck inside librdkafka is given up on once it makes no progress
for its deadline), the commit, and the recovery of a failed transaction: abort it, replace a producer that failed
fatally or may hold a stale coordinator (a new producer with the same transactional.id fences the old one), or
abandon one stuck inside librdkafka (at most MAX_ABANDONED_PRODUCERS). Fenced by another instance is fatal.

A broker that does not answer is waited out, however long it stays away: librdkafka keeps a commit or an abort
going in the background after its call times out (the error is retriable and the same call resumes it; any other
transactional call answers _CONFLICT at once), so each is called again with a capped back-off (policy.Backoff),
reported once per change (policy.BrokerOutage) and never given a deadline. Once the broker answers, a transaction
it timed out meanwhile (transaction.timeout.ms) fails as "fenced"; after an outage that is the coordinator's
doing, not another instance's, and a new producer takes over.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from config.settings import Settings
from consumer.core.scoring import BatchResult, Scored
from consumer.errors import ScorerFatalError, TransactionStuck
from consumer.kafka.clients import producer_config
from consumer.kafka.policy import (
    BACKOFF_MAX_SECONDS,
    COORDINATOR_TROUBLE_CODES,
    FATAL_CODES,
    FENCED_CODES,
    Backoff,
    BrokerOutage,
    RetryClock,
)
from consumer.metrics import ScorerMetrics
from consumer.state import ScorerState
from consumer.workers import Worker

logger = logging.getLogger(__name__)

MAX_PRODUCER_REPLACEMENTS = 5
"""Replacing the producer this often (after fatal errors) without a committed batch in between is fatal."""
MAX_ABANDONED_PRODUCERS = 3
"""Producers left stuck inside librdkafka (``abandon``) are never freed: destroying one would block on the call it
is stuck in, so each keeps its threads, connections and buffered messages for the life of the process. Past this
many the scorer stops (exit 2, saying so) rather than pile them up; a restart with the same SCORER_INSTANCE_ID
fences them all. One stuck call is rare (librdkafka #5456, a coordinator that vanished mid-call)."""

TXN_CALL_TIMEOUT_SECONDS = 10.0
"""Each commit_transaction / abort_transaction / init_transactions attempt blocks at most this long. A retriable
timeout is resumed by calling again, so this bounds how soon a stop is noticed, never how long an outage may last."""
SEND_OFFSETS_DEADLINE_SECONDS = 40.0
"""send_offsets_to_transaction is given 30 s; librdkafka may ignore that when the coordinator vanished."""
COMMIT_DEADLINE_SECONDS = BACKOFF_MAX_SECONDS + TXN_CALL_TIMEOUT_SECONDS + 20.0
"""The commit on the worker reports progress after every attempt and every back-off wait (at most a call timeout
or a back-off apart); this long without progress, it is taken as stuck inside librdkafka."""

ErrorCallback = Callable[[KafkaError], None]
DeliveryCallback = Callable[[KafkaError | None, Message], None]
REPLACEMENT_REASONS = ("fatal", "transaction_timed_out", "stale_coordinator", "stuck", "precaution")
"""The ``reason`` label of housing_scorer_producer_replacements_total (callers may add their own)."""


def _no_progress() -> None:
    """The default progress callback: nobody is watching."""


class CallOutcome:
    """The result of one call handed to a ``ProducerWorker``: set once, waited for with a deadline that restarts
    whenever the call reports progress."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.error: BaseException | None = None
        self.progress_at = time.monotonic()

    def set(self, error: BaseException | None) -> None:
        self.error = error
        self._done.set()

    def progress(self) -> None:
        """The call is alive (an attempt returned, a retry is due): its stuck deadline counts from now."""
        self.progress_at = time.monotonic()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class ProducerWorker(Worker):
    """One daemon thread that runs blocking transactional-producer calls, in order.

    Reused batch after batch. A call stuck inside librdkafka past its deadline (#5456) leaves the worker
    behind with its producer: a daemon thread never keeps the process from exiting, and ``close`` never waits
    for it.
    """

    def __init__(self) -> None:
        super().__init__("txn-worker")
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], CallOutcome] | None] = queue.SimpleQueue()
        self.start()

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            call, outcome = item
            try:
                call()
                outcome.set(None)
            except BaseException as exc:  # handed back to the scoring thread
                outcome.set(exc)

    def submit(self, call: Callable[[], Any], outcome: CallOutcome | None = None) -> CallOutcome:
        """Queue ``call``; ``outcome`` (default: a new one) is set when it ends. Pass one when the call reports
        progress on it (``CallOutcome.progress``)."""
        outcome = outcome if outcome is not None else CallOutcome()
        self._calls.put((call, outcome))
        return outcome

    def run(self, call: Callable[[], Any], deadline: float) -> None:
        """Run ``call`` and wait for it: its exception is raised here, TransactionStuck past ``deadline``."""
        finish(self.submit(call), deadline)

    def close(self) -> None:
        """Ask the thread to end after the calls queued so far, without waiting (a call may be stuck)."""
        self.stop(timeout=0)

    def _wake(self) -> None:
        self._calls.put(None)


def finish(outcome: CallOutcome, deadline: float) -> None:
    """Wait for ``outcome``: the call's exception is raised here; TransactionStuck once it has made no progress
    (``CallOutcome.progress``) for ``deadline`` seconds."""
    while not outcome.wait(max(0.0, outcome.progress_at + deadline - time.monotonic())):
        if time.monotonic() - outcome.progress_at >= deadline:
            raise TransactionStuck(f"producer call did not return within {deadline:.0f}s")
    if outcome.error is not None:
        raise outcome.error


class OutputProducer:
    """Produces a batch's predictions and dead letters with ``client``, the producer client in use."""

    def __init__(self, settings: Settings, error_cb: ErrorCallback, client: Producer | None = None) -> None:
        """:param client: the client to produce with (tests); default: a new one from ``producer_config``."""
        self.settings = settings
        self._error_cb = error_cb
        self.client = client if client is not None else self._new_client()

    def _new_client(self) -> Producer:
        return Producer({**producer_config(self.settings), "error_cb": self._error_cb})

    def produce_all(self, result: BatchResult, predictions_topic: str, dlq_topic: str,
                    on_delivery: DeliveryCallback | None = None) -> None:
        self._produce_scored(result.scored, predictions_topic, on_delivery)
        produce = self._produce
        limit = self.settings.scorer.dlq_max_value_bytes
        for rejected in result.rejected:
            value, headers = rejected.value, rejected.headers
            if len(value) > limit:
                headers = [*headers, ("dlq.truncated_from", str(len(value)).encode())]
                value = value[:limit]
            produce(dlq_topic, rejected.key, value, headers, on_delivery)

    def _produce_scored(self, scored: Sequence[Scored], topic: str, on_delivery: DeliveryCallback | None) -> None:
        """``_produce`` of every prediction, with no Python call of ours per record (the hot loop)."""
        producer, done, count = self.client, 0, len(scored)
        while done < count:
            produce = producer.produce
            try:
                # The stub wants list[tuple[str, str | bytes | None]]; list invariance rejects our narrower type.
                if on_delivery is None:
                    for done in range(done, count):  # noqa: B007, B020 (done: where a full queue stopped us)
                        output = scored[done]
                        produce(topic, output.value, output.key, headers=output.headers)  # type: ignore[arg-type]
                else:
                    for done in range(done, count):  # noqa: B007, B020
                        output = scored[done]
                        produce(topic, output.value, output.key, headers=output.headers,  # type: ignore[arg-type]
                                on_delivery=on_delivery)
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain, then go on from the one refused

    def _produce(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]],
                 on_delivery: DeliveryCallback | None) -> None:
        producer = self.client
        while True:
            try:
                # The stub wants list[tuple[str, str | bytes | None]]; list invariance rejects our narrower type.
                if on_delivery is None:
                    producer.produce(topic, value=value, key=key, headers=headers)  # type: ignore[arg-type]
                else:
                    producer.produce(topic, value=value, key=key, headers=headers,  # type: ignore[arg-type]
                                     on_delivery=on_delivery)
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain

    def flush_at_shutdown(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for what was produced to be delivered; say what was not."""
        try:
            remaining = self.client.flush(timeout)
        except KafkaException as exc:  # a producer that failed fatally raises here; nothing is pending then
            logger.warning("producer flush at shutdown: %s", exc)
            remaining = 0
        if remaining:
            logger.warning("%d produced messages undelivered at shutdown (their offsets were not committed)",
                           remaining)


class TransactionalProducer(OutputProducer):
    """Exactly-once: the transactional producer, its worker thread, and its recovery after a failed transaction.

    ``client`` changes when the producer is replaced: read it for each transaction, never keep it.
    """

    def __init__(self, settings: Settings, error_cb: ErrorCallback, stop: threading.Event,
                 client: Producer | None = None) -> None:
        """:param stop: set when the scorer stops: the retries while Kafka is away end then (never before)."""
        super().__init__(settings, error_cb, client)
        self.clock = RetryClock(stop)
        self.outage = BrokerOutage(self.clock)
        """Kafka not answering the transactional calls: logged once per change, and told to /health and /ready."""
        self._metrics: ScorerMetrics | None = None
        self._worker: ProducerWorker | None = None
        self._abandoned: list[Producer] = []
        self._producer_replacements = 0

    def attach(self, state: ScorerState) -> None:
        """Report to the scorer's state: an outage to the fields /health and /ready read, replacements to
        housing_scorer_producer_replacements_total."""
        self.outage.state = state
        self._metrics = state.metrics

    def init_transactions(self) -> None:
        """Register the transactional.id (fencing an older producer with the same id, aborting its transaction)."""
        producer = self.client
        self._call(lambda: producer.init_transactions(30), "initialise the transactional producer")

    def worker(self) -> ProducerWorker:
        """The thread for this producer's blocking calls; a new one after the last was abandoned."""
        if self._worker is None:
            self._worker = ProducerWorker()
        return self._worker

    def close_worker(self) -> None:
        if self._worker is not None:
            self._worker.close()

    def committed(self) -> None:
        """A batch was committed: producer replacements count from zero again."""
        self._producer_replacements = 0

    def commit_transaction(self, progress: Callable[[], None] = _no_progress) -> None:
        """Commit the open transaction (on the worker thread); returns once it is committed.

        A retriable failure (the broker does not answer) leaves the commit in progress inside librdkafka, which then
        takes only commit_transaction again (abort_transaction would answer "Conflicting commit_transaction API
        call is already in progress" at once): the commit is resumed, backing off, for as long as the outage lasts.

        :param progress: called after each attempt and each wait, so the caller's stuck deadline restarts.
        :raises KafkaException: an error no retry fixes (the transaction must be aborted, or the producer failed
            fatally), or the last retriable one once the scorer stops.
        """
        producer = self.client
        backoff = Backoff(self.clock)
        while True:
            backoff.attempt()
            try:
                producer.commit_transaction(TXN_CALL_TIMEOUT_SECONDS)
                self.outage.answered()
                return
            except KafkaException as exc:
                progress()
                error = exc.args[0]
                if error.fatal() or error.txn_requires_abort() or not error.retriable() or self.clock.stopping:
                    raise
                self.outage.unanswered("commit_transaction", error)
                if backoff.wait():
                    raise
                progress()

    @property
    def abandoned_clients(self) -> int:
        """Producers left stuck inside librdkafka; the process must not wait for them at exit."""
        return len(self._abandoned)

    def abandon(self, exc: TransactionStuck) -> None:
        """Leave a producer stuck inside librdkafka behind; a new one with the same transactional.id fences it
        (its open transaction is aborted by the coordinator). The caller rewinds: the batch is consumed again.

        :raises ScorerFatalError: MAX_ABANDONED_PRODUCERS are stuck already.
        """
        self._abandoned.append(self.client)  # never destroyed while its call may still be running
        self._worker = None  # stuck inside that call; the next transaction gets a new worker
        if len(self._abandoned) > MAX_ABANDONED_PRODUCERS:
            raise ScorerFatalError(
                f"{len(self._abandoned)} transactional producers got stuck inside librdkafka ({exc}); each one "
                f"left behind keeps its threads, connections and buffered messages, so the scorer stops rather "
                f"than pile up more (the cap is {MAX_ABANDONED_PRODUCERS}). Nothing uncommitted is lost. Restart "
                f"it (the same SCORER_INSTANCE_ID fences them); if it happens again, check the brokers' health "
                f"and upgrade confluent-kafka (librdkafka #5456)")
        logger.warning("%s: replacing the transactional producer (librdkafka #5456; %d of at most %d left behind)",
                       exc, len(self._abandoned), MAX_ABANDONED_PRODUCERS)
        self.replace(KafkaError(KafkaError._TIMED_OUT, str(exc)), counted=False, reason="stuck")

    def abort(self, exc: KafkaException) -> None:
        """After a failed transactional call: abort the transaction, or replace the producer when it failed
        fatally. The caller then positions the consumer from the committed offsets.

        abort_transaction is retried, backing off, for as long as the broker does not answer. Where a commit
        that was given up on is still in progress inside librdkafka (abort answers _CONFLICT), that commit is
        resumed instead: it ends committed (the committed offsets then say so) or in an error that says what
        next. When the scorer stops first, the transaction is left to the broker, which aborts it within
        transaction.timeout.ms.

        :raises ScorerFatalError: fenced by another instance with the same SCORER_INSTANCE_ID.
        """
        error = exc.args[0]
        if error.fatal():
            self._replace_after_fatal(error)
            return
        if self.clock.stopping and error.retriable():
            self._leave_to_broker(error)
            return
        producer = self.client
        backoff = Backoff(self.clock)
        operation = "abort_transaction"
        while True:
            backoff.attempt()
            try:
                if operation == "abort_transaction":
                    producer.abort_transaction(TXN_CALL_TIMEOUT_SECONDS)
                else:
                    producer.commit_transaction(TXN_CALL_TIMEOUT_SECONDS)
                    logger.warning("the commit given up on went through after all; the consumer is positioned "
                                   "from the committed offsets")
                self.outage.answered()
                break
            except KafkaException as call_exc:
                call_error = call_exc.args[0]
                code = call_error.code()
                if call_error.fatal():
                    self._replace_after_fatal(call_error)
                    return
                if operation == "abort_transaction" and code == KafkaError._STATE:
                    break  # no transaction in progress (begin_transaction itself failed)
                if operation == "abort_transaction" and code == KafkaError._CONFLICT:
                    operation = "commit_transaction"  # the call librdkafka has in progress: only it may go on
                elif operation == "commit_transaction" and (call_error.txn_requires_abort()
                                                            or code == KafkaError._CONFLICT):
                    operation = "abort_transaction"
                elif not call_error.retriable():
                    self.replace(call_error, reason="fatal")
                    return
                elif code != KafkaError._PREV_IN_PROGRESS:
                    self.outage.unanswered(operation, call_error)
                if backoff.wait():
                    self._leave_to_broker(call_error)
                    return
        if error.code() in COORDINATOR_TROUBLE_CODES:
            # librdkafka can keep a stale transaction/group coordinator after a broker outage, and its next
            # send_offsets_to_transaction then blocks past its timeout (librdkafka #5456, #5511). A new producer
            # with the same transactional.id starts with a fresh coordinator lookup.
            self.replace(error, counted=False, reason="stale_coordinator")

    def _leave_to_broker(self, error: KafkaError) -> None:
        logger.warning("stopping while Kafka does not answer (%s): the open transaction is left to the broker, "
                       "which aborts it within transaction.timeout.ms; its records are scored again by whoever "
                       "consumes the partitions next", error.str())

    def _replace_after_fatal(self, error: KafkaError) -> None:
        """A fatal producer error: a new producer, unless another instance took over our transactional.id."""
        fenced = error.code() in FENCED_CODES
        if fenced and error.code() != KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED and self.outage.away:
            # The broker was away during this transaction: it timed the transaction out (transaction.timeout.ms)
            # and bumped the producer epoch, which librdkafka reports as "fenced by a newer instance" although
            # there is none. A new producer with the same id goes on (counted: a real zombie fight stops soon).
            self.replace(error, reason="transaction_timed_out")
            return
        if fenced:
            raise ScorerFatalError(
                f"transactional producer failed fatally: {error.str()}"
                + (" (fenced: another instance with the same SCORER_INSTANCE_ID took over)"
                   if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED) else ""))
        self.replace(error, reason="fatal")

    def replace(self, cause: KafkaError, *, counted: bool = True, reason: str | None = None) -> None:
        """Close the failed transactional producer and start a new one with the same transactional.id. Its
        init_transactions fences the old one and settles its open transaction at the coordinator (a commit that
        reached it completes, anything else is aborted), retried for as long as the broker does not answer.

        :param counted: a replacement after a fatal producer error counts toward MAX_PRODUCER_REPLACEMENTS;
            a precautionary one (see ``abort``) does not.
        :param reason: the metric's label (default ``fatal`` when counted, else ``precaution``).
        :raises ScorerFatalError: too many replacements in a row, or the new producer cannot be initialised
            (an error no retry fixes).
        """
        reason = reason or ("fatal" if counted else "precaution")
        self._producer_replacements += 1 if counted else 0
        if self._producer_replacements > MAX_PRODUCER_REPLACEMENTS:
            raise ScorerFatalError(f"transactional producer failed {self._producer_replacements} times in a row, "
                                   f"last: {cause.str()}")
        logger.warning("replacing the transactional producer (%s) after: %s", reason, cause.str())
        if self._metrics is not None:
            self._metrics.producer_replacements.labels(reason=reason).inc()
        self.client = self._new_client()
        producer = self.client
        backoff = Backoff(self.clock)
        while True:
            backoff.attempt()
            try:
                producer.init_transactions(TXN_CALL_TIMEOUT_SECONDS)
                self.outage.answered()
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal() or not error.retriable():
                    raise ScorerFatalError(f"could not restart the transactional producer: {error.str()}") \
                        from exc
                self.outage.unanswered("init_transactions", error)
                if backoff.wait():
                    logger.warning("stopping before the new transactional producer was initialised: %s", error.str())
                    return

    def _call(self, operation: Callable[[], Any], what: str) -> Any:
        try:
            return operation()
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal() or error.code() in FATAL_CODES:
                raise ScorerFatalError(f"could not {what}: {error.str()}") from exc
            if error.code() == KafkaError._TIMED_OUT:
                raise ScorerFatalError(
                    f"could not {what}: timed out talking to Kafka at {self.settings.kafka.bootstrap_servers}"
                ) from exc
            raise
