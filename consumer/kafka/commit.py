"""The two processing guarantees, as two commit strategies behind one interface (``CommitStrategy``): how a
scored batch's outputs and its input offsets reach Kafka. The loop picks one per run from
``PROCESSING_GUARANTEE`` and calls only ``CommitStrategy``'s methods.

- ``exactly_once`` (default, ``ExactlyOnceCommit``): a transactional producer; the batch's outputs and its input
  offsets go in one transaction (KIP-447: offsets sent with the consumer's group metadata, so a zombie instance
  is fenced by the group generation). A failed batch is aborted and every assigned partition sought to its
  committed offset as the broker has it (``rewind_to_committed``: never to positions remembered in memory), so
  what was not committed is scored again and what was, never; downstream ``read_committed`` readers see each
  output exactly once. The commit of batch N runs on a worker thread while batch N+1 is consumed and scored;
  N+1 is produced only once N is committed (one transaction at a time), and if N fails, N+1 is rewound with it.
  A broker that does not answer is waited out, however long (``TransactionalProducer``).
- ``at_least_once`` (``AtLeastOnceCommit``): idempotent producer; the loop does not wait for acknowledgements.
  Each batch's outputs are produced and the loop moves on; a batch's input offsets are committed
  (asynchronously) once every output of it and of every batch before it is acknowledged. An output the broker
  refuses rewinds the consumer to the first unacknowledged batch, which is scored again (duplicates, never
  gaps).

Rebalance callbacks never race a batch: before partitions are revoked or lost, the commit in flight is
finished (exactly-once), or the producer is flushed and the acknowledged offsets committed (at-least-once).
With an incremental rebalance protocol only some partitions move; ``on_revoke`` / ``on_lost`` say whether what
was in flight went through, and when it did not the loop seeks the partitions kept to their committed offsets.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchResult, Incoming
from consumer.errors import BatchFailed, ScorerFatalError, TransactionStuck
from consumer.kafka.oversize import TOO_LARGE_CODES, RefusedOutputs
from consumer.kafka.policy import batch_position
from consumer.kafka.positions import rewind, rewind_to_committed
from consumer.kafka.producer import (
    COMMIT_DEADLINE_SECONDS,
    SEND_OFFSETS_DEADLINE_SECONDS,
    CallOutcome,
    OutputProducer,
    TransactionalProducer,
    finish,
)
from consumer.state import ScorerState

logger = logging.getLogger(__name__)

BatchDone = Callable[[list[Incoming], BatchResult, ModelHandle, float], None]
"""Told of a batch that went through (batch, result, handle, perf_counter at its start): committed, or for
at-least-once produced."""
BatchFailure = Callable[[list[Incoming], BatchFailed], None]
"""Told of a batch that failed and was rewound (backs off; may raise ScorerFatalError)."""

MAX_BATCHES_IN_FLIGHT = 8
"""At-least-once: batches produced but not yet acknowledged, at most (bounds what a failure scores again)."""
AT_LEAST_ONCE_COMMIT_INTERVAL_SECONDS = 0.1
"""At-least-once: acknowledged offsets are committed at most this often (not per batch: batches can be tiny)."""


class CommitStrategy(ABC):
    """What the loop does with a scored batch, between batches, on a rebalance and at shutdown.

    ``deliver`` raises BatchFailed for a batch it rewound; failures found later (``settle``, rebalances) go to
    ``on_failure``, and every batch that went through to ``on_done``.
    """

    def __init__(self, settings: Settings, state: ScorerState, consumer: Consumer, *, on_done: BatchDone,
                 on_failure: BatchFailure, refused: RefusedOutputs | None = None) -> None:
        """:param refused: told of each prediction the broker refuses as too large (its input is dead-lettered
            when scored again); None: not watched."""
        self.settings = settings
        self.state = state
        self._consumer = consumer
        self._on_done = on_done
        self._on_failure = on_failure
        self._refused = refused

    @abstractmethod
    def start(self) -> None:
        """Before the consumer subscribes."""

    @abstractmethod
    def deliver(self, batch: list[Incoming], result: BatchResult, handle: ModelHandle, started: float) -> None:
        """Produce the batch's outputs and see its offsets committed.

        :raises BatchFailed: this batch (or one before it) failed; what failed was rewound.
        """

    @abstractmethod
    def settle(self) -> None:
        """Between batches: settle what completed since; a failure found goes to ``on_failure``. Waits only to
        rewind after an output was refused (at-least-once), never for a commit in flight."""

    @abstractmethod
    def on_revoke(self) -> bool:
        """Partitions are about to be revoked: finish or commit what is in flight first (never raises BatchFailed).

        :returns: everything in flight was committed; False: some of it was not, and the partitions that stay
            assigned must be sought to their committed offsets (the caller does it, outside the callback).
        """

    @abstractmethod
    def on_lost(self) -> bool:
        """Partitions were lost: too late to commit; forget what is in flight (never raises BatchFailed).

        :returns: as ``on_revoke``.
        """

    def use_consumer(self, consumer: Consumer) -> None:
        """The loop replaced its consumer before anything was assigned (the group protocol fell back)."""
        self._consumer = consumer

    @abstractmethod
    def close(self) -> None:
        """At shutdown, before the consumer closes: finish or commit what can be, flush the producer."""

    @property
    @abstractmethod
    def batches_in_flight(self) -> int:
        """Batches produced whose commit is not settled yet."""

    @property
    def abandoned_clients(self) -> int:
        """Producers left stuck inside librdkafka; the process must not wait for them at exit."""
        return 0

    def _rewind(self, batch: Sequence[Incoming]) -> None:
        rewind(self._consumer, batch)

    def _watch(self, result: BatchResult) -> Callable[[KafkaError | None, Message], None] | None:
        """The delivery callback that notes the predictions of ``result`` refused as too large."""
        return self._refused.watch(result) if self._refused is not None else None


class PendingCommit:
    """Exactly-once: a batch produced in a transaction whose commit runs on the worker."""

    __slots__ = ("batch", "handle", "outcome", "result", "started")

    def __init__(self, batch: list[Incoming], result: BatchResult, handle: ModelHandle, started: float,
                 outcome: CallOutcome) -> None:
        self.batch, self.result, self.handle, self.started, self.outcome = batch, result, handle, started, outcome


class ExactlyOnceCommit(CommitStrategy):
    """Each batch's outputs and offsets in one transaction, committed on the producer's worker thread while the
    next batch is consumed and scored; one transaction at a time."""

    def __init__(self, settings: Settings, state: ScorerState, consumer: Consumer, producer: TransactionalProducer,
                 *, on_done: BatchDone, on_failure: BatchFailure, refused: RefusedOutputs | None = None) -> None:
        super().__init__(settings, state, consumer, on_done=on_done, on_failure=on_failure, refused=refused)
        self._producer = producer
        self._pending: PendingCommit | None = None
        producer.attach(state)  # an outage shows on /health and /ready, replacements in the metrics

    def start(self) -> None:
        self._producer.init_transactions()

    def deliver(self, batch: list[Incoming], result: BatchResult, handle: ModelHandle, started: float) -> None:
        """Produce the batch and send its offsets in a transaction, then hand the commit to the worker. The batch
        is observed (``on_done``) once committed.

        :raises BatchFailed: this batch, or the previous one whose commit failed (this one rewound with it).
        """
        self.finish_pending()  # one transaction at a time; a failure rewinds every partition, this batch's too
        producer, consumer = self._producer.client, self._consumer
        worker, topics = self._producer.worker(), self.settings.topics
        offsets = next_offsets(batch)
        with self._failing_as_batch():
            producer.begin_transaction()
            self._producer.produce_all(result, topics.predictions, topics.dead_letter,
                                       on_delivery=self._watch(result))
            group_metadata = consumer.consumer_group_metadata()
            worker.run(lambda: producer.send_offsets_to_transaction(offsets, group_metadata, 30),
                       SEND_OFFSETS_DEADLINE_SECONDS)
        outcome, commit_transaction = CallOutcome(), self._producer.commit_transaction
        # The commit reports progress on its outcome while it waits for a broker that does not answer, so it is
        # waited for as long as the outage lasts and taken as stuck only when a call inside it never returns.
        worker.submit(lambda: commit_transaction(outcome.progress), outcome)
        self._pending = PendingCommit(batch, result, handle, started, outcome)

    def finish_pending(self, *, rewind: bool = True) -> None:
        """Wait for the commit in flight; on success count and observe its batch.

        :param rewind: after a failure, seek every assigned partition to its committed offset. False in a
            rebalance callback and at shutdown: whoever consumes a partition that leaves starts from its
            committed offset, and the loop seeks the partitions kept (incremental protocols) once the callback
            has returned.
        :raises BatchFailed: the commit failed; the transaction was aborted and the consumer rewound (with the
            batch consumed meanwhile, not produced yet).
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return
        with self._failing_as_batch(rewind=rewind):
            finish(pending.outcome, COMMIT_DEADLINE_SECONDS)
        self.state.metrics.transactions.labels(result="committed").inc()
        self._producer.committed()
        self._on_done(pending.batch, pending.result, pending.handle, pending.started)

    @contextlib.contextmanager
    def _failing_as_batch(self, *, rewind: bool = True) -> Iterator[None]:
        """A transactional call that fails or gets stuck: recover the producer (abort, or a new producer), position
        the consumer from the committed offsets, BatchFailed."""
        try:
            yield
        except TransactionStuck as exc:
            self._producer.abandon(exc)
            if rewind:
                self._rewind_to_committed()
            raise BatchFailed(str(exc)) from exc
        except KafkaException as exc:
            self._producer.abort(exc)
            if exc.args[0].code() in TOO_LARGE_CODES:
                # An output the broker refused leaves a gap in the producer's sequence numbers: the next
                # transaction of the same producer fails with OUT_OF_ORDER_SEQUENCE_NUMBER. A new one does not.
                self._producer.replace(exc.args[0], counted=False)
            if rewind:
                self._rewind_to_committed()
            raise BatchFailed(str(exc)) from exc

    def _rewind_to_committed(self) -> None:
        rewind_to_committed(self._consumer, self._producer.clock, self._producer.outage)

    def _finish_pending_or_rewind(self, *, backoff: bool = True) -> bool:
        """Settle the commit in flight; False when it failed. ``backoff`` False (a rebalance callback, shutdown):
        a failure is reported, never raised, and the consumer is not sought (see ``finish_pending``)."""
        pending = self._pending
        if pending is None:
            return True
        try:
            self.finish_pending(rewind=backoff)
        except BatchFailed as exc:
            if backoff:
                self._on_failure(pending.batch, exc)
            else:  # in a rebalance callback or at shutdown: report, never raise out of it
                self.state.metrics.transactions.labels(result="aborted").inc()
                logger.warning("batch of %d at %s aborted; its records are consumed again from the committed "
                               "offsets: %s", len(pending.batch), batch_position(pending.batch), exc)
            return False
        return True

    def settle(self) -> None:
        if self._pending is not None and self._pending.outcome.done:
            self._finish_pending_or_rewind()

    def on_revoke(self) -> bool:
        # Every earlier batch was committed (or aborted and rewound) before consume() ran again; the one whose
        # commit is in flight is finished here, before the partitions move on. The whole transaction: with an
        # incremental revoke it may hold offsets of partitions that stay too, which is harmless.
        return self._finish_pending_or_rewind(backoff=False)

    def on_lost(self) -> bool:
        return self._finish_pending_or_rewind(backoff=False)  # its commit fails if the group moved on: aborted

    def close(self) -> None:
        try:
            self._finish_pending_or_rewind(backoff=False)
        except ScorerFatalError as exc:  # already stopping: the open transaction is aborted by the broker
            logger.warning("last commit at shutdown: %s", exc)
        self._producer.close_worker()
        self._producer.flush_at_shutdown(self.settings.scorer.shutdown_timeout)

    @property
    def batches_in_flight(self) -> int:
        return 0 if self._pending is None else 1

    @property
    def abandoned_clients(self) -> int:
        return self._producer.abandoned_clients


class DeliveryFailed(BatchFailed):
    """At-least-once: an output of ``batch`` was not acknowledged; it and every later batch were rewound."""

    def __init__(self, message: str, batch: list[Incoming]) -> None:
        super().__init__(message)
        self.batch = batch


class InFlightBatch:
    """At-least-once: a batch whose outputs are produced; its offsets are committed once all are acknowledged."""

    __slots__ = ("batch", "errors", "offsets", "on_refusal", "pending")

    def __init__(self, batch: list[Incoming], offsets: list[TopicPartition], outputs: int,
                 on_refusal: Callable[[KafkaError | None, Message], None] | None = None) -> None:
        """:param on_refusal: told of each output the broker refused (``RefusedOutputs.watch``)."""
        self.batch = batch
        self.offsets = offsets
        self.pending = outputs
        self.errors: list[KafkaError] = []
        self.on_refusal = on_refusal

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        self.pending -= 1
        if error is not None:
            self.errors.append(error)
            if self.on_refusal is not None:
                self.on_refusal(error, message)


class AtLeastOnceCommit(CommitStrategy):
    """Produce and move on; commit the offsets of the leading batches whose outputs are all acknowledged."""

    def __init__(self, settings: Settings, state: ScorerState, consumer: Consumer, producer: OutputProducer,
                 stop: threading.Event, *, on_done: BatchDone, on_failure: BatchFailure,
                 refused: RefusedOutputs | None = None) -> None:
        """:param stop: the scorer's stop event: back-pressure stops waiting for acknowledgements then."""
        super().__init__(settings, state, consumer, on_done=on_done, on_failure=on_failure, refused=refused)
        self._producer = producer
        self._stop = stop
        self._in_flight: deque[InFlightBatch] = deque()
        self._acknowledged: dict[tuple[str, int], TopicPartition] = {}
        self._next_commit = 0.0

    def start(self) -> None:
        """Nothing to set up before the first batch."""

    @staticmethod
    def on_commit(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's ``on_commit`` callback (asynchronous commits report here)."""
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            logger.warning("offset commit failed: %s (a later commit covers these offsets)", error.str())

    def deliver(self, batch: list[Incoming], result: BatchResult, handle: ModelHandle, started: float) -> None:
        """Produce the batch's outputs and move on; ``_settle`` commits once acknowledged. The batch is observed
        (``on_done``) once produced."""
        producer = self._producer.client
        topics = self.settings.topics
        offsets = next_offsets(batch)
        flight = InFlightBatch(batch, offsets, len(result.scored) + len(result.rejected), self._watch(result))
        self._in_flight.append(flight)  # first: a failure found while waiting below rewinds this batch too
        while len(self._in_flight) > MAX_BATCHES_IN_FLIGHT and not self._stop.is_set():
            producer.poll(0.05)  # back-pressure: wait for acknowledgements before producing more
            self._settle()
        self._producer.produce_all(result, topics.predictions, topics.dead_letter, on_delivery=flight.on_delivery)
        producer.poll(0)
        self._on_done(batch, result, handle, started)

    # --- acknowledgements ----------------------------------------------------------------------------
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
        self._producer.client.flush(self.settings.scorer.shutdown_timeout)
        records = [incoming for flight in self._in_flight for incoming in flight.batch]
        self._in_flight.clear()
        self._rewind(records)  # consumption order: each partition goes back to its first uncommitted record
        first = failed.errors[0]
        names = sorted({f"{error.name()}: {error.str()}" for error in failed.errors})
        raise DeliveryFailed(f"{len(failed.errors)} outputs not acknowledged ({'; '.join(names[:3])})",
                             failed.batch) from KafkaException(first)

    def _settle_or_rewind(self) -> None:
        self._producer.client.poll(0)
        try:
            self._settle()
        except DeliveryFailed as exc:
            self._on_failure(exc.batch, exc)

    def _commit_acknowledged(self, when: str) -> bool:
        """Before partitions move or at shutdown: commit what is acknowledged, synchronously; False when some
        produced batch was not (its records are scored again from the committed offsets)."""
        if not self._in_flight and not self._acknowledged:
            return True
        complete = True
        try:
            self._settle(asynchronous=False)
        except BatchFailed as exc:
            logger.warning("at %s: %s; those records will be scored again", when, exc)
            complete = False
        if self._in_flight:
            logger.warning("at %s: %d produced batches not acknowledged; their records will be scored again",
                           when, len(self._in_flight))
            self._in_flight.clear()
            complete = False
        return complete

    def _commit_offsets(self, offsets: list[TopicPartition], *, asynchronous: bool) -> None:
        if not offsets:
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

    # --- the interface, between batches ---------------------------------------------------------------
    def settle(self) -> None:
        if self._in_flight or self._acknowledged:
            self._settle_or_rewind()

    def on_revoke(self) -> bool:
        # Commit what is acknowledged before the partitions move on.
        if self._in_flight or self._acknowledged:
            self._producer.client.flush(self.settings.scorer.shutdown_timeout)
            return self._commit_acknowledged("rebalance")
        return True

    def on_lost(self) -> bool:
        complete = not self._in_flight and not self._acknowledged
        if self._in_flight:  # too late to commit: the new owner scores these batches again
            logger.warning("%d produced batches not committed; their records will be scored again",
                           len(self._in_flight))
            self._in_flight.clear()
        self._acknowledged.clear()
        return complete

    def close(self) -> None:
        self._producer.flush_at_shutdown(self.settings.scorer.shutdown_timeout)
        self._commit_acknowledged("shutdown")

    @property
    def batches_in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def acknowledged_partitions(self) -> int:
        """Partitions whose acknowledged offsets wait for the next commit."""
        return len(self._acknowledged)


def next_offsets(batch: Sequence[Incoming]) -> list[TopicPartition]:
    """The offsets to commit after a batch: last offset + 1 per partition."""
    last: dict[tuple[str, int], int] = {}
    for incoming in batch:
        last[(incoming.topic, incoming.partition)] = incoming.offset
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()]
