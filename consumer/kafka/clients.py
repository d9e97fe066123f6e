"""Every Kafka client config of the scorer, in one place. Each starts from ``settings.kafka.client_config()``
(bootstrap servers and the security settings) and adds what its role needs."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from config.settings import GroupProtocol, Settings

AT_LEAST_ONCE_DELIVERY_TIMEOUT_MS = 60_000
"""At-least-once: an output not acknowledged within this fails its batch (well inside max.poll.interval.ms)."""

GroupProtocolInUse = Literal["consumer", "classic", "classic-eager"]
"""How the scorer group rebalances (``KAFKA_GROUP_PROTOCOL``, ``auto`` resolved): ``consumer`` is KIP-848 (the
broker assigns; members keep what they own), ``classic`` the cooperative-sticky assignor (incremental too, in
two rounds), ``classic-eager`` the range assignor (every member revokes everything on every change)."""
INCREMENTAL_PROTOCOLS: frozenset[GroupProtocolInUse] = frozenset({"consumer", "classic"})
"""Rebalance callbacks name only the partitions that move; the others keep being consumed meanwhile."""


def first_group_protocol(setting: GroupProtocol) -> GroupProtocolInUse:
    """The protocol to join with first: ``auto`` tries the consumer protocol (the loop falls back to ``classic``
    when the broker refuses it: ``consumer.kafka.loop.refuses_consumer_protocol``)."""
    return "consumer" if setting == "auto" else setting


def group_protocol_config(protocol: GroupProtocolInUse) -> dict[str, Any]:
    """The consumer settings of ``protocol``. With the consumer protocol the session timeout, heartbeat interval
    and assignor are the broker's (``group.consumer.*``): librdkafka refuses them on the client."""
    if protocol == "consumer":
        return {"group.protocol": "consumer"}
    return {
        "group.protocol": "classic",
        "partition.assignment.strategy": "cooperative-sticky" if protocol == "classic" else "range",
        # A dead scorer's partitions move on within seconds, not the 45 s default.
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 2000,
    }


def consumer_config(settings: Settings, protocol: GroupProtocolInUse | None = None) -> dict[str, Any]:
    """The scoring consumer's config; ``protocol`` None: the one ``KAFKA_GROUP_PROTOCOL`` joins with first."""
    scorer = settings.scorer
    config = settings.kafka.client_config()
    config.update({
        "group.id": scorer.group_id,
        "client.id": f"housing-scorer-{scorer.instance_id}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # Never score records of an aborted upstream transaction.
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 10,
        "queued.min.messages": max(10000, scorer.batch_max_records * 4),
        **group_protocol_config(protocol or first_group_protocol(settings.kafka.group_protocol)),
    })
    return config


def producer_config(settings: Settings) -> dict[str, Any]:
    scorer = settings.scorer
    config = settings.kafka.client_config()
    config.update({
        "client.id": f"housing-scorer-{scorer.instance_id}",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        "queue.buffering.max.messages": max(100000, scorer.batch_max_records * 4),
        # Dead letters carry whole originals (up to DLQ_MAX_VALUE_BYTES) plus headers.
        "message.max.bytes": max(1_000_000, scorer.dlq_max_value_bytes + 100_000),
    })
    if scorer.processing_guarantee != "exactly_once":
        config["message.timeout.ms"] = AT_LEAST_ONCE_DELIVERY_TIMEOUT_MS
    else:
        # A stable transactional.id (stable SCORER_INSTANCE_ID) lets a restarted instance fence its own zombie
        # and abort its open transaction at once; the short timeout bounds how long a crashed one can block.
        config["transactional.id"] = f"{scorer.group_id}-{scorer.instance_id}"
        config["transaction.timeout.ms"] = 15000
        # A transaction begun right after the last commit can find the broker still writing that commit's
        # markers (CONCURRENT_TRANSACTIONS): librdkafka retries after retry.backoff.ms, 100 ms by default,
        # which showed up as ~100-200 ms stalls at 10,000 records/s. Retry sooner (it backs off exponentially).
        config["retry.backoff.ms"] = 10
        # The transaction's commit says whether every output was written; a delivery report matters only for an
        # output the broker refused (consumer.kafka.oversize). Successful ones would each cost a Python call
        # while the commit flushes (~0.2 µs of CPU per record measured); at-least-once counts them, so keeps them.
        config["delivery.report.only.error"] = True
    return config


def control_producer_config(settings: Settings, timeout: float) -> dict[str, Any]:
    """Control events and scorer statuses: one small message now and then, flushed at once."""
    config = settings.kafka.client_config()
    config.update({
        "client.id": f"housing-control-{settings.scorer.instance_id}",
        "acks": "all",
        # Not idempotent: its producer-id handshake costs ~0.5 s per new producer, and a retried duplicate is
        # harmless here (scorers ignore an event id they have seen; statuses are last-wins per instance).
        "enable.idempotence": False,
        "linger.ms": 0,
        "message.timeout.ms": max(1000, int(timeout * 1000)),
    })
    return config


def reader_config(settings: Settings, purpose: str) -> dict[str, Any]:
    """A reader that assigns partitions itself (control topic, fleet view): read_committed, nothing committed."""
    config = settings.kafka.client_config()
    # group.id is required by the client, but with assign() and no commits the group is never joined.
    config.update({
        "group.id": f"housing-{purpose}-{settings.scorer.instance_id}-{uuid.uuid4().hex[:8]}",
        "client.id": f"housing-{purpose}-{settings.scorer.instance_id}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 50,
    })
    return config


def admin_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """An AdminClient's config (topic metadata, preflight)."""
    return {**settings.kafka.client_config(), **extra}
