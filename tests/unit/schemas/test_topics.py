"""schemas.topics: the topics the product creates and the DLQ header names."""

from __future__ import annotations

from schemas import topics


def test_every_topic_spec() -> None:
    names = {spec.name: spec for spec in topics.ALL_TOPICS}
    assert set(names) == {
        "housing.records",
        "housing.predictions",
        "housing.records.dlq",
        "housing.model-updates",
        "housing.scorer-status",
    }
    assert [names[n].partitions for n in ("housing.records", "housing.predictions", "housing.records.dlq")] == [6] * 3
    assert names["housing.model-updates"].partitions == 1
    assert names["housing.scorer-status"].config == {"cleanup.policy": "compact"}
    assert topics.DLQ_HEADERS == (
        "dlq.reason",
        "dlq.message",
        "dlq.stage",
        "dlq.source.topic",
        "dlq.source.partition",
        "dlq.source.offset",
    )
