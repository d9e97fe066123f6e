"""The Kafka scoring loop: consume the input topic, score each batch, hand it to the commit strategy.

One batch at a time: wait for a record, take what else arrives until ``BATCH_MAX_WAIT_MS`` after the previous
batch was cut (up to ``BATCH_MAX_RECORDS``), score it with the pure core, then hand it to the commit strategy
(``consumer.kafka.commit``: exactly-once or at-least-once, chosen once per run from ``PROCESSING_GUARANTEE``),
which produces predictions and dead letters and commits the input offsets. Batches size themselves: under
load, what arrived while the last batch was scored is the next.

Rebalance callbacks run inside consume(), never during a batch; the strategy finishes or commits what is in
flight before partitions move. The group rebalances by ``KAFKA_GROUP_PROTOCOL`` (``consumer.kafka.clients``):
with the consumer protocol (KIP-848) or the cooperative-sticky assignor the callbacks name only the partitions
that move, and the others are consumed on meanwhile; ``auto`` falls back from the consumer protocol to
``classic`` when the broker refuses it. The loop also refreshes the consumer lag for /health and the metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from config.runtime import limit_thread_pools
from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchHook, BatchResult, Incoming, score_batch
from consumer.errors import BatchFailed, ScorerFatalError
from consumer.kafka.clients import INCREMENTAL_PROTOCOLS, GroupProtocolInUse, consumer_config, first_group_protocol
from consumer.kafka.commit import AtLeastOnceCommit, CommitStrategy, ExactlyOnceCommit
from consumer.kafka.oversize import RefusedOutputs, max_output_bytes
from consumer.kafka.policy import FATAL_CODES, BatchFailures, ClientErrors, RetryClock
from consumer.kafka.positions import rewind, rewind_to_committed, wake_fetchers
from consumer.kafka.producer import OutputProducer, TransactionalProducer
from consumer.state import ScorerState
from schemas.codecs import PredictionEncoder, RecordDecoder, registry_client
from schemas.errors import RegistryUnavailableError

logger = logging.getLogger(__name__)

_new_incoming = cast(Callable[[tuple[Any, ...]], Incoming], partial(tuple.__new__, Incoming))
"""An Incoming from a 7-tuple of its fields, without a Python call per consumed message."""


IDLE_POLL_SECONDS = 0.1
"""With nothing to consume, the loop still checks for stop, fatal errors and acknowledgements this often."""
LAG_REFRESH_SECONDS = 0.5  # local calls (position, cached watermarks): cheap enough to keep /health current
PROTOCOL_DESCRIPTIONS: dict[GroupProtocolInUse, str] = {
    "consumer": "the consumer group protocol (KIP-848, incremental: members keep their partitions)",
    "classic": "the classic group protocol with the cooperative-sticky assignor (incremental)",
    "classic-eager": "the classic group protocol with the range assignor (eager: every member revokes everything)",
}


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
        self.group_protocol: GroupProtocolInUse = first_group_protocol(settings.kafka.group_protocol)
        """The rebalance protocol the consumer uses now (``auto`` may fall back from consumer to classic)."""
        self._protocol_refused: KafkaError | None = None
        """The broker refused the consumer protocol (``auto``): the loop falls back to classic."""
        self._ever_assigned = False
        self._assigned: set[tuple[str, int]] = set()
        """The assignment as the rebalance callbacks left it (incremental protocols add and remove)."""
        self._moved: set[tuple[str, int]] = set()
        """Partitions revoked or lost while the current batch was fetched: its records of them are dropped."""
        self._rewind_kept = False
        """What was in flight failed in a rebalance callback: the partitions kept are sought to their committed
        offsets before anything more is scored (their positions are past records never committed)."""
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
            self._subscribe(consumer)
            self.state.consumer_running = True
            logger.info("scoring %s -> %s (DLQ %s) as group %s, %s, batches of up to %d / %d ms; rebalancing "
                        "with %s", topics.records, topics.predictions, topics.dead_letter,
                        self.settings.scorer.group_id, self.settings.scorer.processing_guarantee,
                        self.settings.scorer.batch_max_records, self.settings.scorer.batch_max_wait_ms,
                        PROTOCOL_DESCRIPTIONS[self.group_protocol])
            while not self._stop.is_set():
                errors.raise_if_fatal()
                messages = self._next_batch(consumer)
                if self._protocol_refused is not None:
                    consumer = self._fall_back_to_classic(consumer, strategy)
                    continue
                errors.raise_if_fatal()
                if messages:
                    self._process(consumer, strategy, messages)
                strategy.settle()
                self._refresh_lag()
        finally:
            self.state.consumer_running = False
            self._close(self._consumer or consumer, strategy)

    @property
    def incremental(self) -> bool:
        """Rebalances name only the partitions that move (consumer protocol, cooperative-sticky)."""
        return self.group_protocol in INCREMENTAL_PROTOCOLS

    def _start_clients(self) -> tuple[Consumer, CommitStrategy]:
        """The producer, the consumer, and the commit strategy of ``PROCESSING_GUARANTEE`` that uses them."""
        settings, errors, on_done, on_failure = self.settings, self._errors, self._done, self._failures.after_failure
        strategy: CommitStrategy
        if self.exactly_once:
            transactional = TransactionalProducer(settings, errors.on_producer_error, self._stop)
            consumer = self._new_consumer()
            strategy = ExactlyOnceCommit(settings, self.state, consumer, transactional, on_done=on_done,
                                         on_failure=on_failure, refused=self._refused)
        else:
            producer = OutputProducer(settings, errors.on_producer_error)
            consumer = self._new_consumer()
            strategy = AtLeastOnceCommit(settings, self.state, consumer, producer, self._stop, on_done=on_done,
                                         on_failure=on_failure, refused=self._refused)
        self._strategy = strategy
        return consumer, strategy

    def _new_consumer(self) -> Consumer:
        config = {**consumer_config(self.settings, self.group_protocol), "error_cb": self._on_consumer_error}
        if not self.exactly_once:
            config["on_commit"] = AtLeastOnceCommit.on_commit
        self._consumer = consumer = Consumer(config)
        return consumer

    def _subscribe(self, consumer: Consumer) -> None:
        consumer.subscribe([self.settings.topics.records], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_lost)

    # --- the consumer protocol refused (KAFKA_GROUP_PROTOCOL=auto) -------------------------------------------
    def _on_consumer_error(self, error: KafkaError) -> None:
        if (self.settings.kafka.group_protocol == "auto" and self.group_protocol == "consumer"
                and not self._ever_assigned and refuses_consumer_protocol(error)):
            self._protocol_refused = error  # the loop falls back to classic; not a fatal error of the scorer
            return
        self._errors.on_client_error(error)

    def _fall_back_to_classic(self, consumer: Consumer, strategy: CommitStrategy) -> Consumer:
        """The broker refused the consumer protocol before anything was assigned (so nothing is in flight): a new
        consumer joins with the classic protocol and the cooperative-sticky assignor."""
        refused, self._protocol_refused = self._protocol_refused, None
        logger.warning("the broker refused the consumer group protocol (%s): falling back to %s; set "
                       "KAFKA_GROUP_PROTOCOL=classic to join that way at once, or enable the protocol on the broker "
                       "(group.coordinator.rebalance.protocols, group.version)",
                       refused.str() if refused is not None else "?", PROTOCOL_DESCRIPTIONS["classic"])
        try:
            consumer.close()  # failed: it holds no partitions and committed nothing
        except (KafkaException, RuntimeError) as exc:
            logger.debug("closing the refused consumer: %s", exc)
        self.group_protocol = "classic"
        replacement = self._new_consumer()
        strategy.use_consumer(replacement)
        self._subscribe(replacement)
        return replacement

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        """Block until a record is there (at most IDLE_POLL_SECONDS), then take what else arrives until
        BATCH_MAX_WAIT_MS after the previous batch was cut, up to BATCH_MAX_RECORDS.

        Counted from the previous cut, not from this batch's first record: records that queued while the last
        batch was scored have waited already, so under load the next batch goes at once with what arrived (its
        size set by the load), while batches are still cut at most once per BATCH_MAX_WAIT_MS (each has a fixed
        cost). A record never waits for a batch to fill.

        A rebalance inside ``poll()`` or ``consume()`` (its callbacks run there) that takes a partition away makes
        the batch's records of it worthless: its new owner scores them from the committed offset, and a partition
        assigned again (the eager protocol revokes everything) is fetched again from there, so the same offset
        could be in the batch twice. Those records are dropped (``_drop_moved``); the partitions kept go on."""
        self._moved.clear()
        first = consumer.poll(IDLE_POLL_SECONDS)
        batch = [] if first is None else [first]
        if first is not None:
            more = self.settings.scorer.batch_max_records - 1
            wait = gather_seconds(self._last_cut, time.monotonic(), self.settings.scorer.batch_max_wait_ms)
            if more:
                batch.extend(consumer.consume(more, wait))
            self._last_cut = time.monotonic()
        if self._moved or self._rewind_kept:
            return self._drop_moved(consumer, batch)
        return batch

    def _drop_moved(self, consumer: Consumer, messages: list[Message]) -> list[Message]:
        """After a rebalance while the batch was fetched: drop its records of the partitions revoked or lost
        meanwhile, and seek those assigned again to their committed offsets (the commit in flight was finished in
        ``on_revoke``). The batch's records of partitions that stayed are kept (incremental protocols).

        When what was in flight failed inside the callback, every partition still assigned goes back to its
        committed offset and the whole batch is dropped: their positions are past records never committed.

        Never to the batch's first offsets: a record from before the rebalance can be older than the committed
        offset (another member scored it meanwhile) or newer (the commit in flight failed), and either seek
        would score records twice or never."""
        clock = RetryClock(self._stop)
        if self._rewind_kept:
            self._rewind_kept = False
            logger.info("the commit in flight at a rebalance failed: a batch of %d dropped; every assigned "
                        "partition is sought to its committed offset", len(messages))
            rewind_to_committed(consumer, clock)
            return []
        moved = self._moved
        kept = [m for m in messages if m.error() is not None or message_partition(m) not in moved]
        dropped = {message_partition(m) for m in messages if m.error() is None} & moved
        again = dropped & self._assigned  # revoked and assigned again: fetched a second time from committed
        if dropped:
            logger.info("a rebalance happened while a batch gathered: %d records of %s dropped (the partitions "
                        "moved)%s", len(messages) - len(kept), describe_keys(dropped),
                        "; those assigned again are sought to their committed offsets" if again else "")
        if again:
            rewind_to_committed(consumer, clock, partitions=again)
        return kept

    def _close(self, consumer: Consumer, strategy: CommitStrategy) -> None:
        strategy.close()
        try:
            consumer.close()  # leaves the group now, so partitions move without a session timeout
        except (KafkaException, RuntimeError) as exc:
            logger.warning("consumer close: %s", exc)
        self.state.set_assignment(frozenset())

    # --- rebalance callbacks (run inside poll()/consume(), never during a batch) -----------------------
    # Eager protocol: the client applies the change after the callback (assign / unassign of the whole
    # assignment). Incremental protocols: the callback applies it (incremental_assign / incremental_unassign of
    # the partitions that move), then wakes the fetchers of the partitions kept, which librdkafka paused for the
    # callback and resumes without waking their broker thread (positions.wake_fetchers). A call that fails is left
    # to the client: it applies the change itself when the callback did not.
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        added = {(tp.topic, tp.partition) for tp in partitions}
        self._ever_assigned = True
        self._assigned = self._assigned | added if self.incremental else added
        self.state.set_assignment(frozenset(self._assigned))
        if added or not self.incremental:
            logger.info("assigned %s; now own %s", describe_partitions(partitions), self._describe_assigned())
        self._apply_incremental(consumer, partitions, assign=True)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._take_away(partitions, lost=False)
        self._apply_incremental(consumer, partitions, assign=False)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._take_away(partitions, lost=True)
        self._apply_incremental(consumer, partitions, assign=False)

    def _apply_incremental(self, consumer: Consumer, partitions: list[TopicPartition], *, assign: bool) -> None:
        """Incremental protocols: apply the change now (after what was in flight was finished), then wake the
        fetchers of the partitions still assigned."""
        if not self.incremental:
            return
        try:
            if assign:
                consumer.incremental_assign(partitions)
            else:
                consumer.incremental_unassign(partitions)
        except KafkaException as exc:
            logger.warning("incremental %s of %s failed (the client applies it after the callback): %s",
                           "assign" if assign else "unassign", describe_partitions(partitions), exc)
            return
        wake_fetchers(consumer)

    def _take_away(self, partitions: list[TopicPartition], *, lost: bool) -> None:
        """Partitions revoked (the strategy first finishes the commit in flight, exactly-once, or commits what is
        acknowledged, at-least-once) or lost (too late to commit: what is in flight is aborted or forgotten)."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        if self.incremental and not gone:
            return  # an incremental rebalance that takes nothing from this member: nothing to finish
        remaining = self._assigned - gone if self.incremental else set()
        if lost:
            logger.warning("lost %s (another member may already own them); keeping %s",
                           describe_partitions(partitions), describe_keys(remaining))
        else:
            logger.info("revoked %s; keeping %s", describe_partitions(partitions), describe_keys(remaining))
        self._moved |= gone
        assert self._strategy is not None
        committed = self._strategy.on_lost() if lost else self._strategy.on_revoke()
        if not committed and remaining:
            self._rewind_kept = True
        self._assigned = remaining
        self.state.set_assignment(frozenset(remaining))
        # Their lag is the new owner's to report; the kept partitions' stays until the next refresh.
        self.state.set_lag({key: lag for key, lag in self.state.lag.items() if key in remaining})

    def _describe_assigned(self) -> str:
        return describe_keys(self._assigned)

    # --- one batch -----------------------------------------------------------------------------------
    def _process(self, consumer: Consumer, strategy: CommitStrategy, messages: list[Message]) -> None:
        batch: list[Incoming] = []
        append = batch.append
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal() or error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, *FATAL_CODES):
                    raise ScorerFatalError(f"consuming {message.topic()}: {error.str()}")
                logger.warning("consume error: %s", error.str())
                continue
            timestamp_type, timestamp = message.timestamp()
            headers = message.headers()
            # A consumer without deserializers yields bytes keys/values/headers and a set topic/partition/offset.
            append(_new_incoming((message.key(), message.value(), message.topic(), message.partition(),
                                  message.offset(), timestamp if timestamp_type else None,
                                  tuple(headers) if headers else ())))
        if not batch:
            return
        self.state.kafka_connected = True
        started = time.perf_counter()
        handle = self.state.models.current
        if handle is None:  # cannot happen after start-up; rewinding keeps the records for later
            rewind(consumer, batch)
            return
        canary = self.state.models.canary  # read once: the batch is routed by one canary and one share
        try:
            result = score_batch(batch, handle, decoder=self.decoder, encoder=self.encoder,
                                 shadow=self.state.models.shadow if self.settings.scorer.shadow_enabled else None,
                                 canary=canary.handle if canary is not None else None,
                                 canary_fraction=canary.fraction if canary is not None else 0.0,
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


def describe_keys(partitions: set[tuple[str, int]]) -> str:
    """``describe_partitions`` for (topic, partition) pairs, in order."""
    return ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(partitions)) or "nothing"


def message_partition(message: Message) -> tuple[str, int]:
    """(topic, partition) of a consumed record (set on every record a consumer hands out)."""
    return message.topic(), message.partition()  # type: ignore[return-value]


def refuses_consumer_protocol(error: KafkaError) -> bool:
    """The consumer's fatal error when the broker does not support the consumer group protocol, or has it
    disabled: librdkafka stops the consumer at its first ConsumerGroupHeartbeat with UNSUPPORTED_VERSION (or
    _UNSUPPORTED_FEATURE when the broker does not offer the API at all)."""
    return error.code() in (KafkaError.UNSUPPORTED_VERSION, KafkaError._UNSUPPORTED_FEATURE) or (
        error.code() == KafkaError._FATAL and "ConsumerGroupHeartbeat" in error.str()
        and "nsupported" in error.str())
