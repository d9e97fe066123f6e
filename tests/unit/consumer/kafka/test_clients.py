"""consumer.kafka.clients: the scoring consumer's and producer's configs for each processing guarantee."""

from __future__ import annotations

from typing import Any

from config.settings import Settings, load_settings
from consumer.kafka.clients import consumer_config, producer_config


def settings(**flat: Any) -> Settings:
    base = {"scorer.group_id": "g", "scorer.instance_id": "i1"}
    return load_settings({**base, **flat}, env={}, config_path=None)


def test_exactly_once_configs_read_committed_manual_commits_stable_transactional_id() -> None:
    s = settings()
    consumer = consumer_config(s)
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False and consumer["enable.auto.offset.store"] is False
    assert consumer["group.id"] == "g"
    producer = producer_config(s)
    assert producer["transactional.id"] == "g-i1"  # stable across restarts: the restart fences its zombie
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    # Whole dead letters up to DLQ_MAX_VALUE_BYTES must fit one produce request.
    assert producer["message.max.bytes"] > s.scorer.dlq_max_value_bytes
    # The commit tells success; only a refused output needs its delivery report (consumer.kafka.oversize).
    assert producer["delivery.report.only.error"] is True


def test_at_least_once_has_no_transactional_id_and_keeps_every_delivery_report() -> None:
    producer = producer_config(settings(**{"scorer.processing_guarantee": "at_least_once"}))
    assert "transactional.id" not in producer
    # At-least-once commits a batch once each of its outputs is acknowledged: it counts the successful reports.
    assert "delivery.report.only.error" not in producer
