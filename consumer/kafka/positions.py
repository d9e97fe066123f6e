"""Where the consumer resumes after a failed batch: every seek the scoring side makes.

``rewind`` sends a batch nothing of which was produced back to its first records. ``rewind_to_committed`` is for
after an aborted transaction or a replaced producer: every assigned partition goes to its committed offset as the
broker has it, never to a position remembered in memory. ``seek`` retries a failed seek briefly and then stops the
scorer: a partition left past records that were never scored would lose them. ``wake_fetchers`` gets the partitions
kept through an incremental rebalance fetched again at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from consumer.core.scoring import Incoming
from consumer.errors import ScorerFatalError
from consumer.kafka.policy import RETRIABLE_OFFSET_CODES, Backoff, BrokerOutage, RetryClock

logger = logging.getLogger(__name__)

COMMITTED_TIMEOUT_SECONDS = 10.0
"""One attempt at reading the committed offsets; retried, backing off, while the broker does not answer."""
SEEK_ATTEMPTS = 5
"""A seek is local to the consumer; failing this often in a row (about 3 s of back-off) it is fatal."""
WAKE_TIMEOUT_SECONDS = 1.0
"""``wake_fetchers`` waits this long at most for the answer (what it is for is sending the request)."""


def rewind(consumer: Consumer, batch: Sequence[Incoming], clock: RetryClock | None = None) -> None:
    """Seek each partition of the batch back to its first record, so the batch is consumed again (a batch nothing
    of which was produced; after an abort see ``rewind_to_committed``).

    :raises ScorerFatalError: a seek kept failing (never skipped: the partition would stay past records that were
        never scored).
    """
    first: dict[tuple[str, int], int] = {}
    for incoming in batch:
        first.setdefault((incoming.topic, incoming.partition), incoming.offset)
    assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
    clock = clock or RetryClock(threading.Event())
    for (topic, partition), offset in first.items():
        if (topic, partition) not in assigned:
            continue  # revoked meanwhile: its new owner starts from the committed offset
        seek(consumer, TopicPartition(topic, partition, offset), clock)


def rewind_to_committed(consumer: Consumer, clock: RetryClock, outage: BrokerOutage | None = None, *,
                        partitions: Collection[tuple[str, int]] | None = None) -> None:
    """Seek every assigned partition to its committed offset as the broker has it (its beginning where none is:
    ``auto.offset.reset=earliest``), after a transaction was aborted or its producer replaced.

    :param partitions: only these (topic, partition) pairs, of those assigned (a rebalance moved them while a
        batch was fetched); None: every assigned partition.

    Never to positions remembered in memory: only the broker knows which transactions committed. A commit whose
    answer was lost may have reached the coordinator, and the new producer's init_transactions then completes it;
    seeking back to that batch would score it twice. Reading the committed offsets is retried, backing off, for as
    long as the broker does not answer (told to ``outage``); each seek as ``seek`` does. When the scorer stops first,
    nothing is sought: the consumer is closing, and whoever consumes the partitions next starts from the committed
    offsets.

    :raises ScorerFatalError: the committed offsets cannot be read (an error no retry fixes), or a seek kept failing.
    """
    backoff = Backoff(clock)
    while True:
        assigned = consumer.assignment()
        if partitions is not None:
            assigned = [tp for tp in assigned if (tp.topic, tp.partition) in partitions]
        if not assigned:
            return
        backoff.attempt()
        try:
            committed = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in assigned],
                                           timeout=COMMITTED_TIMEOUT_SECONDS)
            failed = next((tp.error for tp in committed if tp.error is not None), None)
            if failed is not None:
                raise KafkaException(failed)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in RETRIABLE_OFFSET_CODES):
                raise ScorerFatalError(f"could not read the committed offsets of {describe(assigned)} to position "
                                       f"the consumer after an aborted batch: {error.str()}") from exc
            if outage is not None:
                outage.unanswered("reading the committed offsets", error)
            if backoff.wait():
                logger.warning("stopping before the consumer could be positioned from the committed offsets; "
                               "nothing is lost (the next owner of its partitions starts from them)")
                return
            continue
        if outage is not None:
            outage.answered()
        break
    for tp in committed:
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING  # none committed yet: from the beginning
        if not seek(consumer, TopicPartition(tp.topic, tp.partition, offset), clock):
            return


def seek(consumer: Consumer, target: TopicPartition, clock: RetryClock) -> bool:
    """Seek ``target`` (a local call: retried SEEK_ATTEMPTS times with a short back-off); False when the scorer
    stopped meanwhile.

    :raises ScorerFatalError: it kept failing; the partition would otherwise stay past records never scored.
    """
    backoff = Backoff(clock, first=0.1, cap=2.0)
    for attempt in range(1, SEEK_ATTEMPTS + 1):
        backoff.attempt()
        try:
            consumer.seek(target)
            return True
        except KafkaException as exc:
            if (target.topic, target.partition) not in {(tp.topic, tp.partition) for tp in consumer.assignment()}:
                return True  # revoked meanwhile: whoever gets it next starts from its committed offset
            where = f"{target.topic}[{target.partition}] at offset {target.offset}"
            if attempt == SEEK_ATTEMPTS:
                raise ScorerFatalError(
                    f"could not position the consumer on {where} ({SEEK_ATTEMPTS} attempts): {exc.args[0].str()}; "
                    f"stopping rather than skip records that were never scored (whoever consumes the partition "
                    f"next starts from its committed offset)") from exc
            logger.warning("seek to %s failed: %s (retrying)", where, exc.args[0].str())
            if backoff.wait():
                return False
    return False  # not reached: the last attempt returns or raises


def wake_fetchers(consumer: Consumer) -> None:
    """After an incremental rebalance callback, have the partitions still assigned fetched again now.

    librdkafka pauses every assigned partition while the application serves an incremental rebalance callback,
    throws away what it had prefetched, and resumes them when incremental_assign / incremental_unassign is called.
    The resume does not wake the thread of the partition's leader: when it was fetching nothing else (every
    partition of this member on that broker was paused), it adds them back to its fetch list only when it next
    wakes for some other reason, at the latest after 1 s (its fixed idle wait). Measured: kept partitions without a
    record for 0.5-0.9 s after a revoke with the consumer protocol. A request to each leader wakes its thread at
    once (and its answer once more): ListOffsets, the cheapest one a consumer can send, for every assigned
    partition in one call. It moves no position; a failure only leaves the wait to librdkafka.
    """
    try:
        # Inside the try too: in a revoke callback of close(), assignment() fails (_DESTROY), and an exception
        # raised in a rebalance callback comes out of close() in a form no except clause matches.
        assigned = consumer.assignment()
        if not assigned:
            return
        consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, OFFSET_END) for tp in assigned],
                                   timeout=WAKE_TIMEOUT_SECONDS)
    except (KafkaException, RuntimeError) as exc:
        logger.debug("waking the fetchers after a rebalance: %s", exc)


def describe(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
