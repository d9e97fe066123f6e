"""The Kafka scoring loop: the only module of consumer/ that talks to the input and output topics.

One batch at a time: wait for a record, take what else arrives until ``BATCH_MAX_WAIT_MS`` after the previous
batch was cut (up to ``BATCH_MAX_RECORDS``), score it with the pure core, then produce predictions and dead
letters and commit the input offsets. Batches size themselves: under load, what arrived while the last batch
was scored is the next.

- ``exactly_once`` (default): a transactional producer; the batch's outputs and its input offsets go in one
  transaction (KIP-447: offsets sent with the consumer's group metadata, so a zombie instance is fenced by
  the group generation). A failed batch is aborted and the consumer rewound to the batch start, so it is
  scored again; downstream ``read_committed`` readers see each output exactly once. The commit of batch N
  runs on a worker thread while batch N+1 is consumed and scored; N+1 is produced only once N is committed
  (one transaction at a time), and if N fails, N+1 is rewound with it.
- ``at_least_once``: idempotent producer; the loop does not wait for acknowledgements. Each batch's outputs
  are produced and the loop moves on; a batch's input offsets are committed (asynchronously) once every output
  of it and of every batch before it is acknowledged. An output the broker refuses rewinds the consumer to the
  first unacknowledged batch, which is scored again (duplicates, never gaps).

Rebalance callbacks never race a batch: before partitions are revoked or lost, the commit in flight is
finished (exactly-once), or the producer is flushed and the acknowledged offsets committed (at-least-once).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from config.runtime import limit_thread_pools
from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchHook, BatchResult, Incoming, score_batch
from consumer.errors import BatchFailed, ScorerFatalError, TransactionStuck
from consumer.kafka.clients import consumer_config, producer_config
from consumer.kafka.policy import COORDINATOR_TROUBLE_CODES, FATAL_CODES, FENCED_CODES, NON_RETRIABLE_PRODUCE_CODES
from consumer.kafka.preflight import CREDENTIAL_SETTINGS
from consumer.state import ScorerState
from schemas.codecs import PredictionEncoder, RecordDecoder, registry_client
from schemas.errors import RegistryUnavailableError

logger = logging.getLogger(__name__)


TRANSIENT_RETRIES = 5
IDLE_POLL_SECONDS = 0.1
"""With nothing to consume, the loop still checks for stop, fatal errors and acknowledgements this often."""
LAG_REFRESH_SECONDS = 0.5  # local calls (position, cached watermarks): cheap enough to keep /health current
MAX_BACKOFF_SECONDS = 5.0
POISON_BATCH_ATTEMPTS = 5
"""The same batch failing this often for a reason no retry fixes (a message the broker refuses) is fatal."""
MAX_PRODUCER_REPLACEMENTS = 5
"""Replacing the producer this often without a committed batch in between is fatal."""

SEND_OFFSETS_DEADLINE_SECONDS = 40.0
"""send_offsets_to_transaction is given 30 s; librdkafka may ignore that when the coordinator vanished."""



COMMIT_DEADLINE_SECONDS = SEND_OFFSETS_DEADLINE_SECONDS + TRANSIENT_RETRIES * 30
"""commit_transaction gets 30 s per attempt; past all attempts plus slack the call is taken as stuck."""


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


class ProducerWorker:
    """One daemon thread that runs blocking transactional-producer calls, in order.

    Reused batch after batch. A call stuck inside librdkafka past its deadline (#5456) leaves the worker
    behind with its producer: a daemon thread never keeps the process from exiting.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], CallOutcome] | None] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="txn-worker", daemon=True).start()

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
        self._calls.put(None)


def finish(outcome: CallOutcome, deadline: float) -> None:
    if not outcome.wait(deadline):
        raise TransactionStuck(f"producer call did not return within {deadline:.0f}s")
    if outcome.error is not None:
        raise outcome.error


class PendingCommit:
    """Exactly-once: a batch produced in a transaction whose commit runs on the worker."""

    __slots__ = ("batch", "handle", "outcome", "result", "started")

    def __init__(self, batch: list[Incoming], result: BatchResult, handle: ModelHandle, started: float,
                 outcome: CallOutcome) -> None:
        self.batch, self.result, self.handle, self.started, self.outcome = batch, result, handle, started, outcome


class DeliveryFailed(BatchFailed):
    """At-least-once: an output of ``batch`` was not acknowledged; it and every later batch were rewound."""

    def __init__(self, message: str, batch: list[Incoming]) -> None:
        super().__init__(message)
        self.batch = batch


MAX_BATCHES_IN_FLIGHT = 8
"""At-least-once: batches produced but not yet acknowledged, at most (bounds what a failure scores again)."""
AT_LEAST_ONCE_COMMIT_INTERVAL_SECONDS = 0.1
"""At-least-once: acknowledged offsets are committed at most this often (not per batch: batches can be tiny)."""


class InFlightBatch:
    """At-least-once: a batch whose outputs are produced; its offsets are committed once all are acknowledged."""

    __slots__ = ("batch", "errors", "offsets", "pending")

    def __init__(self, batch: list[Incoming], offsets: list[TopicPartition], outputs: int) -> None:
        self.batch = batch
        self.offsets = offsets
        self.pending = outputs
        self.errors: list[KafkaError] = []

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        self.pending -= 1
        if error is not None:
            self.errors.append(error)



class ScoringLoop:
    """Consume, score, produce, commit; on its own thread. ``stop`` ends it after the batch in flight."""

    def __init__(self, settings: Settings, state: ScorerState, *, hooks: Sequence[BatchHook] = (),
                 decoder: RecordDecoder | None = None, encoder: PredictionEncoder | None = None) -> None:
        self.settings = settings
        self.state = state
        self.hooks = list(hooks)
        registry = registry_client(settings.schema_registry_url)
        self.decoder = decoder or RecordDecoder(registry, max_bytes=settings.scorer.max_message_bytes)
        self.encoder = encoder or PredictionEncoder(registry, subject=f"{settings.topics.predictions}-value")
        self.exactly_once = settings.scorer.processing_guarantee == "exactly_once"
        self._stop = threading.Event()
        self._fatal: str | None = None
        self._in_flight: deque[InFlightBatch] = deque()
        self._acknowledged: dict[tuple[str, int], TopicPartition] = {}
        self._next_commit = 0.0
        self._pending: PendingCommit | None = None
        self._worker: ProducerWorker | None = None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._next_lag_refresh = 0.0
        self._last_cut = 0.0
        """When the last batch was cut (monotonic): the next one gathers until BATCH_MAX_WAIT_MS after it."""
        self._consecutive_failures = 0
        self._abandoned: list[Producer | None] = []
        self._non_retriable_failures = 0
        self._producer_replacements = 0

    # --- life cycle ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Run until ``stop()``; raises ScorerFatalError on an error no retry can fix."""
        # OpenMP limits are per thread: set them on the thread that predicts.
        limit_thread_pools(self.settings.scorer.model_threads)
        topics = self.settings.topics
        self._producer = Producer({**producer_config(self.settings), "error_cb": self._on_producer_error})
        self._consumer = Consumer({**consumer_config(self.settings), "error_cb": self._on_client_error,
                                   **({} if self.exactly_once else {"on_commit": self._on_commit})})
        consumer, producer = self._consumer, self._producer
        try:  # Kafka and the topics were checked by ScorerService.start (check_kafka_topics)
            if self.exactly_once:
                self._call(lambda: producer.init_transactions(30), "initialise the transactional producer")
            consumer.subscribe([topics.records], on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)
            self.state.consumer_running = True
            logger.info("scoring %s -> %s (DLQ %s) as group %s, %s, batches of up to %d / %d ms",
                        topics.records, topics.predictions, topics.dead_letter, self.settings.scorer.group_id,
                        self.settings.scorer.processing_guarantee, self.settings.scorer.batch_max_records,
                        self.settings.scorer.batch_max_wait_ms)
            while not self._stop.is_set():
                self._raise_if_fatal()
                messages = self._next_batch(consumer)
                self._raise_if_fatal()
                if messages:
                    self._process(messages)
                if self._in_flight or self._acknowledged:
                    self._settle_or_rewind()
                if self._pending is not None and self._pending.outcome.done:
                    self._finish_pending_or_rewind()
                self._refresh_lag()
        finally:
            self.state.consumer_running = False
            self._close()

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        """Block until a record is there (at most IDLE_POLL_SECONDS), then take what else arrives until
        BATCH_MAX_WAIT_MS after the previous batch was cut, up to BATCH_MAX_RECORDS.

        Counted from the previous cut, not from this batch's first record: records that queued while the last
        batch was scored have waited already, so under load the next batch goes at once with what arrived (its
        size set by the load), while batches are still cut at most once per BATCH_MAX_WAIT_MS (each has a fixed
        cost). A record never waits for a batch to fill."""
        first = consumer.poll(IDLE_POLL_SECONDS)
        if first is None:
            return []
        more = self.settings.scorer.batch_max_records - 1
        wait = gather_seconds(self._last_cut, time.monotonic(), self.settings.scorer.batch_max_wait_ms)
        batch = [first, *consumer.consume(more, wait)] if more else [first]
        self._last_cut = time.monotonic()
        return batch

    def _close(self) -> None:
        deadline = self.settings.scorer.shutdown_timeout
        try:
            self._finish_pending_or_rewind(backoff=False)
        except ScorerFatalError as exc:  # already stopping: the open transaction is aborted by the broker
            logger.warning("last commit at shutdown: %s", exc)
        if self._worker is not None:
            self._worker.close()
        if self._producer is not None:
            try:
                remaining = self._producer.flush(deadline)
            except KafkaException as exc:  # a producer that failed fatally raises here; nothing is pending then
                logger.warning("producer flush at shutdown: %s", exc)
                remaining = 0
            if remaining:
                logger.warning("%d produced messages undelivered at shutdown (their offsets were not committed)",
                               remaining)
            self._commit_acknowledged("shutdown")
        if self._consumer is not None:
            try:
                self._consumer.close()  # leaves the group now, so partitions move without a session timeout
            except (KafkaException, RuntimeError) as exc:
                logger.warning("consumer close: %s", exc)
        self.state.set_assignment(frozenset())

    # --- rebalance callbacks (run inside consume(), never during a batch) -----------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.state.set_assignment(frozenset((tp.topic, tp.partition) for tp in partitions))
        logger.info("assigned %s", _describe(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Exactly-once: every batch was committed (or aborted and rewound) before consume() ran again.
        # At-least-once: commit what is acknowledged before the partitions move on.
        logger.info("revoked %s", _describe(partitions))
        self._finish_pending_or_rewind(backoff=False)
        if (self._in_flight or self._acknowledged) and self._producer is not None:
            self._producer.flush(self.settings.scorer.shutdown_timeout)
            self._commit_acknowledged("rebalance")
        self.state.set_assignment(frozenset())

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.warning("lost %s (another member may already own them)", _describe(partitions))
        self._finish_pending_or_rewind(backoff=False)  # its commit fails if the group moved on: aborted
        if self._in_flight:  # too late to commit: the new owner scores these batches again
            logger.warning("%d produced batches not committed; their records will be scored again",
                           len(self._in_flight))
            self._in_flight.clear()
        self._acknowledged.clear()
        self.state.set_assignment(frozenset())

    # --- errors --------------------------------------------------------------------------------------
    def _on_client_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() in FATAL_CODES:
            self._fatal = f"{error.name()}: {error.str()}"
        elif error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            # librdkafka repeats these on every reconnect attempt (several a second): warn once per outage/cause.
            if self.state.kafka_connected or self.state.kafka_error != error.str():
                logger.warning("Kafka: %s (retrying)", error.str())
            self.state.kafka_connected = False
            self.state.kafka_error = error.str()
        else:
            logger.warning("Kafka client error: %s", error.str())

    def _on_producer_error(self, error: KafkaError) -> None:
        if error.fatal() and self.exactly_once and error.code() not in FENCED_CODES:
            # Recoverable by a new producer (see FENCED_CODES); the failing batch reports it and is rewound.
            logger.warning("transactional producer failed: %s (it will be replaced)", error.str())
            return
        self._on_client_error(error)

    def _replace_producer(self, cause: KafkaError, *, counted: bool = True) -> None:
        """Close the failed transactional producer and start a new one with the same transactional.id.

        :param counted: a replacement after a fatal producer error counts toward MAX_PRODUCER_REPLACEMENTS;
            a precautionary one after a timeout (see ``_abort_and_rewind``) does not.
        """
        self._producer_replacements += 1 if counted else 0
        if self._producer_replacements > MAX_PRODUCER_REPLACEMENTS:
            raise ScorerFatalError(f"transactional producer failed {self._producer_replacements} times in a row, "
                                   f"last: {cause.str()}")
        logger.warning("replacing the transactional producer after: %s", cause.str())
        self._producer = Producer({**producer_config(self.settings), "error_cb": self._on_producer_error})
        producer = self._producer
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

    def _raise_if_fatal(self) -> None:
        if self._fatal:
            hint = ""
            if "AUTHENTICATION" in self._fatal.upper() or "SASL" in self._fatal.upper():
                hint = f": Kafka refused this client's credentials; check {CREDENTIAL_SETTINGS}"
            elif "FENCED" in self._fatal.upper():
                hint = (": another scorer took over this transactional id; give each instance its own "
                        "SCORER_INSTANCE_ID")
            raise ScorerFatalError(f"fatal Kafka error {self._fatal}{hint}")

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

    # --- one batch -----------------------------------------------------------------------------------
    def _process(self, messages: list[Message]) -> None:
        batch: list[Incoming] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal() or error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, *FATAL_CODES):
                    raise ScorerFatalError(f"consuming {message.topic()}: {error.str()}")
                logger.warning("consume error: %s", error.str())
                continue
            timestamp_type, timestamp = message.timestamp()
            # A consumer without deserializers yields bytes keys/values/headers and a set topic/partition/offset.
            batch.append(Incoming(message.key(), message.value(), message.topic(),  # type: ignore[arg-type]
                                  message.partition(), message.offset(),  # type: ignore[arg-type]
                                  timestamp if timestamp_type else None,
                                  tuple(message.headers() or ())))  # type: ignore[arg-type]
        if not batch:
            return
        self.state.kafka_connected = True
        started = time.perf_counter()
        handle = self.state.models.current
        if handle is None:  # cannot happen after start-up; rewinding keeps the records for later
            self._rewind(batch)
            return
        try:
            result = score_batch(batch, handle, decoder=self.decoder, encoder=self.encoder,
                                 shadow=self.state.models.shadow if self.settings.scorer.shadow_enabled else None)
        except RegistryUnavailableError as exc:
            # Not the records' fault: nothing is produced or committed; the batch comes again after a backoff.
            self._rewind(batch)
            self._after_failure(batch, BatchFailed(f"schema registry unavailable: {exc}"))
            return
        try:
            if self.exactly_once:
                self._deliver_in_transaction(batch, result, handle, started)
                return  # observed once committed
            self._deliver(batch, result)
        except BatchFailed as exc:
            self._after_failure(batch, exc)
            return
        self._consecutive_failures = self._non_retriable_failures = self._producer_replacements = 0
        self._observe(batch, result, handle, started)

    def _after_failure(self, batch: list[Incoming], exc: BatchFailed) -> None:
        """Back off before the rewound batch comes again; a batch the broker keeps refusing is fatal."""
        self.state.metrics.transactions.labels(result="aborted").inc()
        self._consecutive_failures += 1
        cause = exc.__cause__
        code = cause.args[0].code() if isinstance(cause, KafkaException) else None
        refused = code in NON_RETRIABLE_PRODUCE_CODES or any(
            name in str(exc) for name in ("MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE", "INVALID_RECORD"))
        self._non_retriable_failures = self._non_retriable_failures + 1 if refused else 0
        logger.warning("batch of %d at %s aborted and rewound (attempt %d): %s", len(batch), _positions(batch),
                       self._consecutive_failures, exc)
        if self._non_retriable_failures >= POISON_BATCH_ATTEMPTS:
            raise ScorerFatalError(
                f"the broker refused the same batch {self._non_retriable_failures} times ({exc}); nothing was "
                f"committed. If a dead letter is too large, raise max.message.bytes on "
                f"{self.settings.topics.dead_letter} or lower DLQ_MAX_VALUE_BYTES")
        self._stop.wait(min(MAX_BACKOFF_SECONDS, 0.05 * 2 ** self._consecutive_failures))

    def _deliver_in_transaction(self, batch: list[Incoming], result: BatchResult, handle: ModelHandle,
                                started: float) -> None:
        """Produce the batch and send its offsets in a transaction, then hand the commit to the worker.

        :raises BatchFailed: this batch, or the previous one whose commit failed (this one rewound with it).
        """
        self._finish_pending(also_rewind=batch)  # one transaction at a time
        producer, consumer = self._producer, self._consumer
        assert producer is not None and consumer is not None
        if self._worker is None:
            self._worker = ProducerWorker()
        worker, topics = self._worker, self.settings.topics
        offsets = _next_offsets(batch)
        with self._failing_as_batch(batch):
            producer.begin_transaction()
            self._produce_all(result, topics.predictions, topics.dead_letter)
            group_metadata = consumer.consumer_group_metadata()
            worker.run(lambda: producer.send_offsets_to_transaction(offsets, group_metadata, 30),
                       SEND_OFFSETS_DEADLINE_SECONDS)
        self._pending = PendingCommit(batch, result, handle, started, worker.submit(self._commit_transaction))

    def _finish_pending(self, also_rewind: Sequence[Incoming] = ()) -> None:
        """Wait for the commit in flight; on success count and observe its batch.

        :param also_rewind: a batch consumed after it and not produced: rewound with it if it failed.
        :raises BatchFailed: the commit failed; the transaction was aborted and both batches rewound.
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return
        with self._failing_as_batch([*pending.batch, *also_rewind]):
            finish(pending.outcome, COMMIT_DEADLINE_SECONDS)
        self.state.metrics.transactions.labels(result="committed").inc()
        self._consecutive_failures = self._non_retriable_failures = self._producer_replacements = 0
        self._observe(pending.batch, pending.result, pending.handle, pending.started)

    @contextlib.contextmanager
    def _failing_as_batch(self, records: list[Incoming]) -> Iterator[None]:
        """A transactional call that fails or gets stuck: recover the producer, rewind ``records``, BatchFailed."""
        try:
            yield
        except TransactionStuck as exc:
            self._abandon_producer(records, exc)
            raise BatchFailed(str(exc)) from exc
        except KafkaException as exc:
            self._abort_and_rewind(records, exc)
            raise BatchFailed(str(exc)) from exc

    def _finish_pending_or_rewind(self, *, backoff: bool = True) -> None:
        pending = self._pending
        if pending is None:
            return
        try:
            self._finish_pending()
        except BatchFailed as exc:
            if backoff:
                self._after_failure(pending.batch, exc)
            else:  # in a rebalance callback or at shutdown: report, never raise out of it
                self.state.metrics.transactions.labels(result="aborted").inc()
                logger.warning("batch of %d at %s aborted and rewound: %s", len(pending.batch),
                               _positions(pending.batch), exc)

    def _deliver(self, batch: list[Incoming], result: BatchResult) -> None:
        """At-least-once: produce the batch's outputs and move on; ``_settle`` commits once acknowledged."""
        producer = self._producer
        assert producer is not None
        topics = self.settings.topics
        offsets = _next_offsets(batch)
        flight = InFlightBatch(batch, offsets, len(result.scored) + len(result.rejected))
        self._in_flight.append(flight)  # first: a failure found while waiting below rewinds this batch too
        while len(self._in_flight) > MAX_BATCHES_IN_FLIGHT and not self._stop.is_set():
            producer.poll(0.05)  # back-pressure: wait for acknowledgements before producing more
            self._settle()
        self._produce_all(result, topics.predictions, topics.dead_letter, on_delivery=flight.on_delivery)
        producer.poll(0)

    def _produce_all(self, result: BatchResult, predictions_topic: str, dlq_topic: str,
                     on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
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
                 on_delivery: Callable[[KafkaError | None, Message], None] | None) -> None:
        producer = self._producer
        assert producer is not None
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

    # --- at-least-once acknowledgements --------------------------------------------------------------
    def _settle(self, *, asynchronous: bool = True) -> None:
        """Commit the offsets of the leading batches whose outputs are all acknowledged.

        :raises DeliveryFailed: a batch has an output the broker refused; it and every later batch were rewound.
        """
        acknowledged = self._acknowledged
        try:
            while self._in_flight and self._in_flight[0].pending <= 0:
                flight = self._in_flight[0]
                if flight.errors:
                    self._rewind_in_flight(flight)
                self._in_flight.popleft()
                acknowledged.update(((tp.topic, tp.partition), tp) for tp in flight.offsets)
                self.state.metrics.transactions.labels(result="committed").inc()
        finally:
            now = time.monotonic()
            if acknowledged and (not asynchronous or now >= self._next_commit):
                self._commit_offsets(list(acknowledged.values()), asynchronous=asynchronous)
                acknowledged.clear()
                self._next_commit = now + AT_LEAST_ONCE_COMMIT_INTERVAL_SECONDS

    def _rewind_in_flight(self, failed: InFlightBatch) -> None:
        """Wait for every produced output, then rewind to the first batch not committed, and fail."""
        assert self._producer is not None
        self._producer.flush(self.settings.scorer.shutdown_timeout)
        records = [incoming for flight in self._in_flight for incoming in flight.batch]
        self._in_flight.clear()
        self._rewind(records)  # consumption order: each partition goes back to its first uncommitted record
        first = failed.errors[0]
        names = sorted({f"{error.name()}: {error.str()}" for error in failed.errors})
        raise DeliveryFailed(f"{len(failed.errors)} outputs not acknowledged ({'; '.join(names[:3])})",
                             failed.batch) from KafkaException(first)

    def _settle_or_rewind(self) -> None:
        assert self._producer is not None
        self._producer.poll(0)
        try:
            self._settle()
        except DeliveryFailed as exc:
            self._after_failure(exc.batch, exc)

    def _commit_acknowledged(self, when: str) -> None:
        """At-least-once, before partitions move or at shutdown: commit what is acknowledged, synchronously."""
        if not self._in_flight and not self._acknowledged:
            return
        try:
            self._settle(asynchronous=False)
        except BatchFailed as exc:
            logger.warning("at %s: %s; those records will be scored again", when, exc)
        if self._in_flight:
            logger.warning("at %s: %d produced batches not acknowledged; their records will be scored again",
                           when, len(self._in_flight))
            self._in_flight.clear()

    def _commit_offsets(self, offsets: list[TopicPartition], *, asynchronous: bool) -> None:
        if not offsets or self._consumer is None:
            return
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The outputs are out; re-scoring after a restart gives duplicates, which at-least-once allows.
            logger.warning("offset commit failed (records after the last committed offset will be scored "
                           "again after a restart): %s", exc)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            logger.warning("offset commit failed: %s (a later commit covers these offsets)", error.str())

    def _commit_transaction(self) -> None:
        producer = self._producer
        assert producer is not None
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

    def _abandon_producer(self, batch: list[Incoming], exc: TransactionStuck) -> None:
        """Leave a producer stuck inside librdkafka behind; a new one with the same transactional.id fences it
        (its open transaction is aborted by the coordinator) and the batch is consumed again."""
        logger.warning("%s: replacing the transactional producer (librdkafka #5456)", exc)
        self._abandoned.append(self._producer)  # never destroyed while its call may still be running
        self._worker = None  # stuck inside that call; the next transaction gets a new worker
        self._replace_producer(KafkaError(KafkaError._TIMED_OUT, str(exc)), counted=False)
        self._rewind(batch)

    def _abort_and_rewind(self, batch: list[Incoming], exc: KafkaException) -> None:
        producer = self._producer
        assert producer is not None
        error = exc.args[0]
        if error.fatal() and error.code() in FENCED_CODES:
            raise ScorerFatalError(
                f"transactional producer failed fatally: {error.str()}"
                + (" (fenced: another instance with the same SCORER_INSTANCE_ID took over)"
                   if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED) else "")
            ) from exc
        if error.fatal():
            self._replace_producer(error)
            self._rewind(batch)
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
                    self._replace_producer(abort_error)
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
            self._replace_producer(error, counted=False)
        self._rewind(batch)

    def _rewind(self, batch: list[Incoming]) -> None:
        """Seek each partition of the batch back to its first record, so the batch is consumed again."""
        consumer = self._consumer
        assert consumer is not None
        first: dict[tuple[str, int], int] = {}
        for incoming in batch:
            first.setdefault((incoming.topic, incoming.partition), incoming.offset)
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for (topic, partition), offset in first.items():
            if (topic, partition) not in assigned:
                continue  # revoked meanwhile: its new owner starts from the committed offset
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                logger.warning("could not rewind %s[%d] to %d: %s", topic, partition, offset, exc)

    # --- bookkeeping ---------------------------------------------------------------------------------
    def _observe(self, batch: list[Incoming], result: BatchResult, handle: ModelHandle, started: float) -> None:
        metrics = self.state.metrics
        metrics.records_consumed.inc(len(batch))
        metrics.batch_size.observe(len(batch))
        metrics.predict_seconds.observe(result.predict_seconds)
        metrics.batch_seconds.observe(time.perf_counter() - started)
        if result.scored:
            metrics.records_scored.labels(model_version=handle.version).inc(len(result.scored))
        for rejected in result.rejected:
            metrics.records_dead_lettered.labels(reason=rejected.reason, stage=rejected.stage).inc()
        stamps_ms = np.fromiter((incoming.timestamp_ms or 0 for incoming in batch), np.float64, len(batch))
        ages_ms = time.time() * 1000 - stamps_ms[stamps_ms > 0]
        metrics.end_to_end_seconds.observe_many(np.maximum(ages_ms, 0.0) / 1000)
        self.state.add_counts(len(batch), len(result.scored), len(result.rejected))
        for hook in self.hooks:
            try:
                hook(result, handle)
            except Exception:  # a monitoring hook must never stop scoring
                logger.exception("batch hook %r failed", hook)

    def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag_refresh or self._consumer is None:
            return
        self._next_lag_refresh = now + LAG_REFRESH_SECONDS
        consumer = self._consumer
        try:
            assignment = consumer.assignment()
            if not assignment:
                self.state.set_lag({})
                return
            positions = consumer.position(assignment)
            lag = {}
            for tp in positions:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:
                    lag[(tp.topic, tp.partition)] = max(0, high - tp.offset)
            self.state.set_lag(lag)
        except KafkaException as exc:
            logger.debug("lag refresh: %s", exc)


def gather_seconds(last_cut: float, now: float, batch_max_wait_ms: int) -> float:
    """How long a batch whose first record is in hand may gather more: until BATCH_MAX_WAIT_MS after the previous
    batch was cut (``last_cut``), so 0 after a quiet spell or a batch that took longer than the wait."""
    return max(0.0, last_cut + batch_max_wait_ms / 1000 - now)


def _next_offsets(batch: Sequence[Incoming]) -> list[TopicPartition]:
    """The offsets to commit after a batch: last offset + 1 per partition."""
    last: dict[tuple[str, int], int] = {}
    for incoming in batch:
        last[(incoming.topic, incoming.partition)] = incoming.offset
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()]


def _describe(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def _positions(batch: Sequence[Incoming]) -> str:
    first = batch[0]
    return f'partition="{first.topic}[{first.partition}]" offset="{first.offset}"'
