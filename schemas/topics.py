"""Topic names, partition counts, configs and header names: the Kafka side of the contract."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic the product creates and uses."""

    name: str
    """Default name; settings may override it (tests use per-test names)."""
    partitions: int
    """Partitions to create; the scorer's parallelism is bounded by the records topic's count."""
    config: dict[str, str] = field(default_factory=dict)
    """Topic-level configs passed to create_topics."""
    value_schema: str | None = None
    """File name under schemas/avro/ of the value's Avro schema, if it has one."""

    @property
    def value_subject(self) -> str:
        """Schema-registry subject of the value under the TopicNameStrategy."""
        return f"{self.name}-value"


RECORDS: Final = TopicSpec("housing.records", 6, value_schema="housing_record.avsc")
PREDICTIONS: Final = TopicSpec("housing.predictions", 6, value_schema="prediction.avsc")
DEAD_LETTER: Final = TopicSpec("housing.records.dlq", 6)
MODEL_UPDATES: Final = TopicSpec("housing.model-updates", 1, value_schema="model_update_event.avsc")
# Compacted: the latest status per instance id is the fleet view.
SCORER_STATUS: Final = TopicSpec(
    "housing.scorer-status", 1, {"cleanup.policy": "compact"}, value_schema="scorer_status.avsc"
)

ALL_TOPICS: Final[tuple[TopicSpec, ...]] = (RECORDS, PREDICTIONS, DEAD_LETTER, MODEL_UPDATES, SCORER_STATUS)
"""The scorer's topics (it checks them at start-up)."""

# Live accuracy (housing-evaluate): outcomes in, their dead letters, the evaluator's state and its published view.
OUTCOMES: Final = TopicSpec("housing.outcomes", 6, value_schema="outcome.avsc")
OUTCOMES_DEAD_LETTER: Final = TopicSpec("housing.outcomes.dlq", 6)
# Compacted, key = evaluator id: the latest performance snapshot (GET /api/model/performance, a later gate).
EVALUATION: Final = TopicSpec("housing.evaluation", 1, {"cleanup.policy": "compact"})
# Compacted, key = evaluator id: the latest checkpoint (stats, positions, pending offsets); large values.
EVALUATOR_CHECKPOINTS: Final = TopicSpec(
    "housing.evaluator-checkpoints", 1, {"cleanup.policy": "compact", "max.message.bytes": "16777216"}
)
EVALUATION_TOPICS: Final[tuple[TopicSpec, ...]] = (OUTCOMES, OUTCOMES_DEAD_LETTER, EVALUATION, EVALUATOR_CHECKPOINTS)
"""The evaluator's topics (it checks them at start-up); ``housing-stack up`` creates them with the others."""

# Headers on housing.predictions
HEADER_MODEL_NAME: Final = "model_name"
HEADER_MODEL_VERSION: Final = "model_version"
HEADER_FORMAT: Final = "format"
"""Wire format of the value: json, avro-single-object or avro-confluent (WireFormat values)."""

# Headers on housing.records.dlq (values are UTF-8 bytes; partition and offset as decimal text)
HEADER_DLQ_REASON: Final = "dlq.reason"
HEADER_DLQ_MESSAGE: Final = "dlq.message"
HEADER_DLQ_STAGE: Final = "dlq.stage"
HEADER_DLQ_SOURCE_TOPIC: Final = "dlq.source.topic"
HEADER_DLQ_SOURCE_PARTITION: Final = "dlq.source.partition"
HEADER_DLQ_SOURCE_OFFSET: Final = "dlq.source.offset"
DLQ_HEADERS: Final = (
    HEADER_DLQ_REASON,
    HEADER_DLQ_MESSAGE,
    HEADER_DLQ_STAGE,
    HEADER_DLQ_SOURCE_TOPIC,
    HEADER_DLQ_SOURCE_PARTITION,
    HEADER_DLQ_SOURCE_OFFSET,
)
