"""The scorer's output producer, and the transactional producer's recovery.

``OutputProducer`` produces a batch's predictions and dead letters (at-least-once uses it as it is).
``TransactionalProducer`` adds what exactly-once needs: ``init_transactions``, a worker thread for the blocking
transactional calls (``ProducerWorker``: a call stuck inside librdkafka is given up on past its deadline), the
commit with its retries, and the recovery of a failed transaction: abort it, replace a producer that failed
fatally or may hold a stale coordinator (a new producer with the same transactional.id fences the old one), or
abandon one stuck inside librdkafka. Fenced by another instance is fatal.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from config.settings import Settings
from consumer.core.scoring import BatchResult
from consumer.errors import ScorerFatalError, TransactionStuck
from consumer.kafka.clients import producer_config
from consumer.kafka.policy import COORDINATOR_TROUBLE_CODES, FATAL_CODES, FENCED_CODES
from consumer.workers import Worker

logger = logging.getLogger(__name__)

TRANSIENT_RETRIES = 5
MAX_PRODUCER_REPLACEMENTS = 5
"""Replacing the producer this often without a committed batch in between is fatal."""

SEND_OFFSETS_DEADLINE_SECONDS = 40.0
"""send_offsets_to_transaction is given 30 s; librdkafka may ignore that when the coordinator vanished."""
COMMIT_DEADLINE_SECONDS = SEND_OFFSETS_DEADLINE_SECONDS + TRANSIENT_RETRIES * 30
"""commit_transaction gets 30 s per attempt; past all attempts plus slack the call is taken as stuck."""

ErrorCallback = Callable[[KafkaError], None]
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class CallOutcome:
    """The result of one call handed to a ``ProducerWorker``: set once, waited for with a deadline."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.error: BaseException | None = None

    def set(self, error: BaseException | None) -> None:
        self.error = error
        self._done.set()

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

    def submit(self, call: Callable[[], Any]) -> CallOutcome:
        outcome = CallOutcome()
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
    if not outcome.wait(deadline):
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
        produce = self._produce
        for scored in result.scored:
            produce(predictions_topic, scored.key, scored.value, scored.headers, on_delivery)
        limit = self.settings.scorer.dlq_max_value_bytes
        for rejected in result.rejected:
            value, headers = rejected.value, rejected.headers
            if len(value) > limit:
                headers = [*headers, ("dlq.truncated_from", str(len(value)).encode())]
                value = value[:limit]
            produce(dlq_topic, rejected.key, value, headers, on_delivery)

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
        """:param stop: set when the scorer stops: recovery retries give up then instead of for 120 s."""
        super().__init__(settings, error_cb, client)
        self._stop = stop
        self._worker: ProducerWorker | None = None
        self._abandoned: list[Producer] = []
        self._producer_replacements = 0

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

    def commit_transaction(self) -> None:
        producer = self.client
        for attempt in range(TRANSIENT_RETRIES):
            try:
                producer.commit_transaction(30)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.retriable() and attempt + 1 < TRANSIENT_RETRIES:
                    logger.warning("commit_transaction: %s (retrying)", error.str())
                    continue
                raise

    @property
    def abandoned_clients(self) -> int:
        """Producers left stuck inside librdkafka; the process must not wait for them at exit."""
        return len(self._abandoned)

    def abandon(self, exc: TransactionStuck) -> None:
        """Leave a producer stuck inside librdkafka behind; a new one with the same transactional.id fences it
        (its open transaction is aborted by the coordinator). The caller rewinds the batch: it is consumed again."""
        logger.warning("%s: replacing the transactional producer (librdkafka #5456)", exc)
        self._abandoned.append(self.client)  # never destroyed while its call may still be running
        self._worker = None  # stuck inside that call; the next transaction gets a new worker
        self.replace(KafkaError(KafkaError._TIMED_OUT, str(exc)), counted=False)

    def abort(self, exc: KafkaException) -> None:
        """After a failed transactional call: abort the transaction, or replace the producer when it failed
        fatally. The caller rewinds the batch.

        :raises ScorerFatalError: fenced (another instance took over), or the transaction could not be aborted.
        """
        producer = self.client
        error = exc.args[0]
        if error.fatal() and error.code() in FENCED_CODES:
            raise ScorerFatalError(
                f"transactional producer failed fatally: {error.str()}"
                + (" (fenced: another instance with the same SCORER_INSTANCE_ID took over)"
                   if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED) else "")
            ) from exc
        if error.fatal():
            self.replace(error)
            return
        deadline = time.monotonic() + 120
        while True:
            try:
                producer.abort_transaction(30)
                break
            except KafkaException as abort_exc:
                abort_error = abort_exc.args[0]
                if abort_error.fatal() and abort_error.code() in FENCED_CODES:
                    raise ScorerFatalError(f"could not abort a transaction: {abort_error.str()}") from abort_exc
                if abort_error.fatal():
                    self.replace(abort_error)
                    break
                if abort_error.code() == KafkaError._STATE:
                    break  # no transaction in progress (begin_transaction itself failed)
                if time.monotonic() > deadline or self._stop.is_set():
                    raise ScorerFatalError(f"could not abort a transaction for 120 s: {abort_error.str()}") \
                        from abort_exc
                logger.warning("abort_transaction: %s (retrying)", abort_error.str())
        if error.code() in COORDINATOR_TROUBLE_CODES:
            # librdkafka can keep a stale transaction/group coordinator after a broker outage, and its next
            # send_offsets_to_transaction then blocks past its timeout (librdkafka #5456, #5511). A new producer
            # with the same transactional.id starts with a fresh coordinator lookup.
            self.replace(error, counted=False)

    def replace(self, cause: KafkaError, *, counted: bool = True) -> None:
        """Close the failed transactional producer and start a new one with the same transactional.id.

        :param counted: a replacement after a fatal producer error counts toward MAX_PRODUCER_REPLACEMENTS;
            a precautionary one after a timeout (see ``abort``) does not.
        """
        self._producer_replacements += 1 if counted else 0
        if self._producer_replacements > MAX_PRODUCER_REPLACEMENTS:
            raise ScorerFatalError(f"transactional producer failed {self._producer_replacements} times in a row, "
                                   f"last: {cause.str()}")
        logger.warning("replacing the transactional producer after: %s", cause.str())
        self.client = self._new_client()
        producer = self.client
        deadline = time.monotonic() + 120
        while True:  # init_transactions fences the old producer and aborts its open transaction
            try:
                producer.init_transactions(30)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal() or time.monotonic() > deadline or self._stop.is_set():
                    raise ScorerFatalError(f"could not restart the transactional producer: {error.str()}") \
                        from exc
                logger.warning("init_transactions: %s (retrying)", error.str())

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
