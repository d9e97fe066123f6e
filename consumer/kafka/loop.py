"""The Kafka scoring loop: consume the input topic, score each batch, hand it to the commit strategy.

One batch at a time: wait for a record, take what else arrives until ``BATCH_MAX_WAIT_MS`` after the previous
batch was cut (up to ``BATCH_MAX_RECORDS``), score it with the pure core, then hand it to the commit strategy
(``consumer.kafka.commit``: exactly-once or at-least-once, chosen once per run from ``PROCESSING_GUARANTEE``),
which produces predictions and dead letters and commits the input offsets. Batches size themselves: under
load, what arrived while the last batch was scored is the next.

Rebalance callbacks run inside consume(), never during a batch; the strategy finishes or commits what is in
flight before partitions move. The loop also refreshes the consumer lag for /health and the metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from config.runtime import limit_thread_pools
from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchHook, BatchResult, Incoming, score_batch
from consumer.errors import BatchFailed, ScorerFatalError
from consumer.kafka.clients import consumer_config
from consumer.kafka.commit import AtLeastOnceCommit, CommitStrategy, ExactlyOnceCommit
from consumer.kafka.oversize import RefusedOutputs, max_output_bytes
from consumer.kafka.policy import FATAL_CODES, BatchFailures, ClientErrors, RetryClock
from consumer.kafka.positions import rewind, rewind_to_committed
from consumer.kafka.producer import OutputProducer, TransactionalProducer
from consumer.state import ScorerState
from schemas.codecs import PredictionEncoder, RecordDecoder, registry_client
from schemas.errors import RegistryUnavailableError

logger = logging.getLogger(__name__)


IDLE_POLL_SECONDS = 0.1
"""With nothing to consume, the loop still checks for stop, fatal errors and acknowledgements this often."""
LAG_REFRESH_SECONDS = 0.5  # local calls (position, cached watermarks): cheap enough to keep /health current


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
        self._errors = ClientErrors(state, exactly_once=self.exactly_once)
        self._failures = BatchFailures(settings, state, self._stop)
        self._consumer: Consumer | None = None
        self._strategy: CommitStrategy | None = None
        self._next_lag_refresh = 0.0
        self._last_cut = 0.0
        """When the last batch was cut (monotonic): the next one gathers until BATCH_MAX_WAIT_MS after it."""
        self._rebalances = 0
        """Assign, revoke and lost callbacks so far: a batch gathered across one is dropped (``_next_batch``)."""
        self._refused = RefusedOutputs.for_settings(settings)
        """Inputs whose prediction the broker refused as too large: dead-lettered when scored again."""
        self._max_output_bytes = max_output_bytes(settings)

    # --- life cycle ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def abandoned_clients(self) -> int:
        """Producers left stuck inside librdkafka; the process must not wait for them at exit."""
        return self._strategy.abandoned_clients if self._strategy is not None else 0

    def run(self) -> None:
        """Run until ``stop()``; raises ScorerFatalError on an error no retry can fix."""
        # OpenMP limits are per thread: set them on the thread that predicts.
        limit_thread_pools(self.settings.scorer.model_threads)
        topics, errors = self.settings.topics, self._errors
        consumer, strategy = self._start_clients()
        try:  # Kafka and the topics were checked by ScorerService.start (check_kafka_topics)
            strategy.start()
            consumer.subscribe([topics.records], on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)
            self.state.consumer_running = True
            logger.info("scoring %s -> %s (DLQ %s) as group %s, %s, batches of up to %d / %d ms",
                        topics.records, topics.predictions, topics.dead_letter, self.settings.scorer.group_id,
                        self.settings.scorer.processing_guarantee, self.settings.scorer.batch_max_records,
                        self.settings.scorer.batch_max_wait_ms)
            while not self._stop.is_set():
                errors.raise_if_fatal()
                messages = self._next_batch(consumer)
                errors.raise_if_fatal()
                if messages:
                    self._process(consumer, strategy, messages)
                strategy.settle()
                self._refresh_lag()
        finally:
            self.state.consumer_running = False
            self._close(consumer, strategy)

    def _start_clients(self) -> tuple[Consumer, CommitStrategy]:
        """The producer, the consumer, and the commit strategy of ``PROCESSING_GUARANTEE`` that uses them."""
        settings, errors, on_done, on_failure = self.settings, self._errors, self._done, self._failures.after_failure
        consumer_settings = {**consumer_config(settings), "error_cb": errors.on_client_error}
        strategy: CommitStrategy
        if self.exactly_once:
            transactional = TransactionalProducer(settings, errors.on_producer_error, self._stop)
            self._consumer = consumer = Consumer(consumer_settings)
            strategy = ExactlyOnceCommit(settings, self.state, consumer, transactional, on_done=on_done,
                                         on_failure=on_failure, refused=self._refused)
        else:
            producer = OutputProducer(settings, errors.on_producer_error)
            self._consumer = consumer = Consumer({**consumer_settings, "on_commit": AtLeastOnceCommit.on_commit})
            strategy = AtLeastOnceCommit(settings, self.state, consumer, producer, self._stop, on_done=on_done,
                                         on_failure=on_failure, refused=self._refused)
        self._strategy = strategy
        return consumer, strategy

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        """Block until a record is there (at most IDLE_POLL_SECONDS), then take what else arrives until
        BATCH_MAX_WAIT_MS after the previous batch was cut, up to BATCH_MAX_RECORDS.

        Counted from the previous cut, not from this batch's first record: records that queued while the last
        batch was scored have waited already, so under load the next batch goes at once with what arrived (its
        size set by the load), while batches are still cut at most once per BATCH_MAX_WAIT_MS (each has a fixed
        cost). A record never waits for a batch to fill.

        A rebalance inside ``consume()`` (its callbacks run there) makes the gathered batch worthless: the first
        record came from the old assignment, and a partition assigned again is fetched again from its committed
        offset, so the same offset could be in the batch twice. Such a batch is dropped and rewound, never scored."""
        first = consumer.poll(IDLE_POLL_SECONDS)
        if first is None:
            return []
        more = self.settings.scorer.batch_max_records - 1
        wait = gather_seconds(self._last_cut, time.monotonic(), self.settings.scorer.batch_max_wait_ms)
        rebalances = self._rebalances
        batch = [first, *consumer.consume(more, wait)] if more else [first]
        self._last_cut = time.monotonic()
        if self._rebalances != rebalances:
            self._drop_gathered(consumer, batch)
            return []
        return batch

    def _drop_gathered(self, consumer: Consumer, messages: list[Message]) -> None:
        """Drop a batch gathered across a rebalance: seek every assigned partition to its committed offset, where
        the new assignment started (the commit in flight was finished in ``on_revoke``; with the consumer's eager
        assignment every partition was revoked).

        Not to the batch's first offsets: a record from before the rebalance can be older than the committed
        offset (another member scored it meanwhile) or newer (the commit in flight failed), and either seek
        would score records twice or never."""
        logger.info("a rebalance happened while a batch of %d gathered: dropped; the assigned partitions are "
                    "sought to their committed offsets", len(messages))
        rewind_to_committed(consumer, RetryClock(self._stop))

    def _close(self, consumer: Consumer, strategy: CommitStrategy) -> None:
        strategy.close()
        try:
            consumer.close()  # leaves the group now, so partitions move without a session timeout
        except (KafkaException, RuntimeError) as exc:
            logger.warning("consumer close: %s", exc)
        self.state.set_assignment(frozenset())

    # --- rebalance callbacks (run inside consume(), never during a batch) -----------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalances += 1
        self.state.set_assignment(frozenset((tp.topic, tp.partition) for tp in partitions))
        logger.info("assigned %s", describe_partitions(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The strategy finishes the commit in flight (exactly-once) or commits what is acknowledged
        # (at-least-once) before the partitions move on.
        logger.info("revoked %s", describe_partitions(partitions))
        self._rebalances += 1
        assert self._strategy is not None
        self._strategy.on_revoke()
        self.state.set_assignment(frozenset())
        self.state.set_lag({})  # their lag is the new owner's to report

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.warning("lost %s (another member may already own them)", describe_partitions(partitions))
        self._rebalances += 1
        assert self._strategy is not None
        self._strategy.on_lost()
        self.state.set_assignment(frozenset())
        self.state.set_lag({})

    # --- one batch -----------------------------------------------------------------------------------
    def _process(self, consumer: Consumer, strategy: CommitStrategy, messages: list[Message]) -> None:
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
            rewind(consumer, batch)
            return
        try:
            result = score_batch(batch, handle, decoder=self.decoder, encoder=self.encoder,
                                 shadow=self.state.models.shadow if self.settings.scorer.shadow_enabled else None,
                                 max_output_bytes=self._max_output_bytes, refused=self._refused.positions())
        except RegistryUnavailableError as exc:
            # Not the records' fault: nothing is produced or committed; the batch comes again after a backoff.
            rewind(consumer, batch)
            self._failures.after_failure(batch, BatchFailed(f"schema registry unavailable: {exc}"))
            return
        try:
            strategy.deliver(batch, result, handle, started)  # observed (_done) once committed, or produced
        except BatchFailed as exc:
            self._failures.after_failure(batch, exc)

    def _done(self, batch: list[Incoming], result: BatchResult, handle: ModelHandle, started: float) -> None:
        """A batch went through (committed, or for at-least-once produced): count and observe it."""
        self._failures.succeeded()
        self._observe(batch, result, handle, started)

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


def describe_partitions(partitions: Sequence[TopicPartition]) -> str:
    """``topic[partition], ...`` for the rebalance logs; ``nothing`` for none."""
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
