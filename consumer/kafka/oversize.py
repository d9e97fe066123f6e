"""Outputs too large to produce: their inputs are dead-lettered (``output_too_large``), never retried for ever.

A prediction carries its input's key, so a huge key can make it larger than Kafka takes. Two limits:

- the producer's own ``message.max.bytes``: librdkafka refuses a larger message at ``produce()``. The loop hands
  ``max_output_bytes`` (that limit less the record framing) to ``score_batch``, which dead-letters such a record
  instead of producing its prediction;
- the predictions topic's ``max.message.bytes`` (1 MiB by default): the broker refuses the message, and the
  delivery report says MSG_SIZE_TOO_LARGE or RECORD_LIST_TOO_LARGE. Its batch then fails (exactly-once: the
  transaction is aborted; at-least-once: the consumer is rewound) and is scored again; ``RefusedOutputs`` has
  remembered the refused input by position, and ``score_batch`` dead-letters it this time.

librdkafka fails every message of a produce request the broker refused, and one request holds up to the
producer's ``batch.size`` bytes of one partition. So a refused prediction counts as too large by its own size
only: larger than ``batch.size`` (such a message always goes alone), or larger than the topic's
``max.message.bytes``, read from the broker when a refusal comes. Small predictions refused together mean that
the topic takes less than one producer batch: a configuration to fix, logged as such (the batch keeps failing).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient, ConfigResource

from config.settings import Settings
from consumer.core.scoring import BatchResult, Position
from consumer.kafka.clients import admin_config, producer_config
from schemas.errors import MAX_MESSAGE_CHARS

logger = logging.getLogger(__name__)

TOO_LARGE_CODES = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
"""Delivery errors of a message (or of the produce request holding it) larger than the broker takes."""
DEFAULT_BATCH_BYTES = 1_000_000
"""librdkafka's ``batch.size`` default: the most bytes of one partition's messages in one produce request."""
FRAMING_BYTES = 256
"""Record batch header (61 bytes), record and header framing, with room to spare."""
MAX_REMEMBERED = 10_000
"""Refused inputs remembered at most (the oldest forgotten first); each is needed only until it is scored again."""

TopicLimit = Callable[[str], "int | None"]
"""A topic's ``max.message.bytes``, or None when the broker does not say."""


def max_output_bytes(settings: Settings) -> int:
    """The largest prediction (key + value + headers) the scorer's producer takes."""
    return int(producer_config(settings)["message.max.bytes"]) - FRAMING_BYTES


def topic_limit_reader(settings: Settings, timeout: float = 10.0) -> TopicLimit:
    """Reads a topic's ``max.message.bytes`` from the broker (DescribeConfigs), only after a refusal."""

    def read(topic: str) -> int | None:
        try:
            admin = AdminClient(admin_config(settings))
            [future] = admin.describe_configs([ConfigResource("topic", topic)], request_timeout=timeout).values()
            return int(future.result(timeout=timeout + 5)["max.message.bytes"].value)
        except (KafkaException, KeyError, ValueError, TypeError, concurrent.futures.TimeoutError) as exc:
            logger.warning("could not read max.message.bytes of %s: %s", topic, exc)
            return None

    return read


class RefusedOutputs:
    """Inputs whose prediction the broker refused as too large, by position, until they are scored again.

    ``watch(result)`` gives the delivery callback for one batch's outputs (librdkafka calls it inside
    poll/flush/commit, for exactly-once on the producer's worker thread); ``positions()``, on the scoring thread
    before each batch, returns what is known (position -> why) for ``score_batch(refused=...)``.
    """

    def __init__(self, predictions_topic: str, *, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 topic_limit: TopicLimit | None = None) -> None:
        self.topic = predictions_topic
        self._batch_bytes = batch_bytes
        self._topic_limit = topic_limit
        self._reports: deque[tuple[Position, int, str]] = deque()
        """Refusals not looked at yet: (input position, prediction bytes, error text); appended by any thread."""
        self._positions: dict[Position, str] = {}
        """Only the scoring thread reads or writes this."""
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> RefusedOutputs:
        return cls(settings.topics.predictions,
                   batch_bytes=int(producer_config(settings).get("batch.size", DEFAULT_BATCH_BYTES)),
                   topic_limit=topic_limit_reader(settings))

    def watch(self, result: BatchResult) -> Callable[[KafkaError | None, Message], None]:
        """The ``on_delivery`` callback for the outputs of ``result``: notes its predictions refused as too large."""
        sources: dict[bytes, Position] | None = None

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            nonlocal sources
            if error is None or error.code() not in TOO_LARGE_CODES or message.topic() != self.topic:
                return
            if sources is None:  # only after a refusal: which input each prediction came from
                sources = {s.value: (s.source.topic, s.source.partition, s.source.offset) for s in result.scored}
            value = message.value() or b""
            position = sources.get(value)
            if position is not None:
                headers: Any = message.headers() or ()
                size = len(message.key() or b"") + len(value) + sum(len(n) + len(v or b"") for n, v in headers)
                with self._lock:
                    self._reports.append((position, size, error.str()))

        return on_delivery

    def positions(self) -> Mapping[Position, str]:
        """The inputs to dead-letter as ``output_too_large`` when scored (position -> why)."""
        if self._reports:
            with self._lock:
                reports, self._reports = list(self._reports), deque()
            self._classify(reports)
        return self._positions

    def _classify(self, reports: list[tuple[Position, int, str]]) -> None:
        limit: int | None = None
        if any(size <= self._batch_bytes for _, size, _ in reports) and self._topic_limit is not None:
            limit = self._topic_limit(self.topic)
        not_own = 0
        for position, size, text in reports:
            if size <= self._batch_bytes and limit is not None and size + FRAMING_BYTES <= limit:
                not_own += 1  # refused with the rest of its produce request, not for its own size
                continue
            where = f" ({limit:,})" if limit is not None else ""
            why = (f"the broker refused its {size:,}-byte prediction as larger than {self.topic}'s "
                   f"max.message.bytes{where}: {text}")
            self._positions[position] = why[:MAX_MESSAGE_CHARS]
            logger.warning("%s[%d] offset %d: %s; the input will be dead-lettered as output_too_large",
                           *position, why)
        if not_own:
            logger.error("the broker refused %d predictions as too large although each fits %s's max.message.bytes "
                         "(%s): the topic takes less than one producer batch (batch.size %d bytes); raise its "
                         "max.message.bytes", not_own, self.topic, f"{limit:,}", self._batch_bytes)
        for position in list(itertools.islice(self._positions, max(0, len(self._positions) - MAX_REMEMBERED))):
            del self._positions[position]
