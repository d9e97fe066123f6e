"""Confluent-framed Avro against a real schema registry (Apicurio Registry's Confluent-compatible API), not the
client's ``mock://``: the producer registers, the scorer resolves and registers its own Prediction schema, a
record written with a newer schema (one more optional field) is read by the scorer's older reader schema, and a
record naming a schema id the registry does not know is dead-lettered as ``unknown_schema_id``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from config.settings import Settings
from consumer.service import ScorerService
from schemas.codecs import HOUSING_RECORD, RecordEncoder, WireFormat, decode_prediction, detect_format
from schemas.wire import confluent_frame, confluent_schema_id
from tests.helpers import housing_rows, keys_of, read_to_end, wait_for

pytestmark = pytest.mark.integration

PRODUCER = Path(sys.executable).with_name("housing-produce")


def registry(url: str) -> SchemaRegistryClient:
    # A client of our own, not schemas.registry.registry_client: what is seen here is what the registry holds.
    return SchemaRegistryClient({"url": url})


def produce(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True, "linger.ms": 5})
    for key, value in messages:
        producer.produce(settings.topics.records, key=key.encode(), value=value)
    assert producer.flush(30) == 0, "records not delivered"


def score_until_consumed(settings: Settings, count: int) -> None:
    service = ScorerService(settings)
    service.start()
    try:
        assert wait_for(lambda: service.state.counts["consumed"] >= count or not service.running, 90), \
            service.state.counts
        assert service.state.fatal_error is None
    finally:
        service.stop()


def test_the_producer_registers_and_the_scorer_resolves(scorer_settings: Settings,
                                                        schema_registry_url: str) -> None:
    settings = scorer_settings.replace(schema_registry_url=schema_registry_url)
    count = 200
    result = subprocess.run(
        [str(PRODUCER), "--bootstrap-servers", settings.kafka.bootstrap_servers, "--topic", settings.topics.records,
         "--count", str(count), "--format", "avro", "--schema-registry-url", schema_registry_url, "--no-progress",
         "--log-level", "WARNING"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    client = registry(schema_registry_url)
    records = read_to_end(settings.kafka.bootstrap_servers, settings.topics.records)
    assert len(records) == count and {detect_format(m.value) for m in records} == {WireFormat.AVRO_CONFLUENT}
    [record_id] = {confluent_schema_id(m.value) for m in records}
    registered = client.get_latest_version("housing.records-value")
    assert registered.schema_id == record_id
    assert json.loads(registered.schema.schema_str)["name"] == HOUSING_RECORD.raw["name"]

    score_until_consumed(settings, count)

    predictions = read_to_end(settings.kafka.bootstrap_servers, settings.topics.predictions)
    assert read_to_end(settings.kafka.bootstrap_servers, settings.topics.dead_letter) == []
    assert sorted(keys_of(predictions)) == sorted(keys_of(records))
    # The scorer answered in the records' format and registered the Prediction schema under <topic>-value.
    [prediction_id] = {confluent_schema_id(m.value) for m in predictions}
    assert client.get_latest_version(f"{settings.topics.predictions}-value").schema_id == prediction_id
    assert json.loads(client.get_schema(prediction_id).schema_str)["name"] == "Prediction"
    decoded = [decode_prediction(m.value, client) for m in predictions]
    assert {d["record_id"] for d in decoded} == {m.key.decode() for m in records}


def evolved_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """HousingRecord v2: one more field, optional with a default (a backward-compatible change). First, not last: a
    reader that ignored the writer schema would then misread every field, not just leave trailing bytes."""
    return {**raw, "fields": [{"name": "listing_source", "type": ["null", "string"], "default": None},
                              *raw["fields"]]}


def test_a_newer_writer_schema_is_read_and_an_unknown_schema_id_is_dead_lettered(
        scorer_settings: Settings, schema_registry_url: str) -> None:
    settings = scorer_settings.replace(schema_registry_url=schema_registry_url)
    client = registry(schema_registry_url)
    subject = f"{settings.topics.records}-value"  # this test's own subject: versions 1 and 2 are ours
    v1_encoder = RecordEncoder(client, subject=subject)
    rows = housing_rows(40, 300)
    prefix = uuid.uuid4().hex[:6]
    messages = [(f"{prefix}-v1-{i}", v1_encoder.encode({**row, "record_id": f"{prefix}-v1-{i}"},
                                                        WireFormat.AVRO_CONFLUENT)) for i, row in enumerate(rows)]

    client.set_compatibility(subject, "BACKWARD")
    v2_raw = evolved_schema(HOUSING_RECORD.raw)
    v2_id = client.register_schema(subject, Schema(json.dumps(v2_raw), "AVRO"))
    v1_id = confluent_schema_id(messages[0][1])
    assert v2_id != v1_id and client.get_versions(subject) == [1, 2]
    v2_parsed = fastavro.parse_schema(v2_raw)
    for i, row in enumerate(rows):
        key = f"{prefix}-v2-{i}"
        body = io.BytesIO()
        fastavro.schemaless_writer(body, v2_parsed, {**row, "record_id": key, "event_time": None,
                                                     "listing_source": f"agent-{i}"})
        messages.append((key, confluent_frame(v2_id, body.getvalue())))

    unknown_id = max(v1_id, v2_id) + 10_000
    unknown = confluent_frame(unknown_id, HOUSING_RECORD.write({**rows[0], "record_id": f"{prefix}-unknown"}))
    messages.append((f"{prefix}-unknown", unknown))
    produce(settings, messages)

    score_until_consumed(settings, len(messages))

    bootstrap = settings.kafka.bootstrap_servers
    predictions = read_to_end(bootstrap, settings.topics.predictions)
    dead = read_to_end(bootstrap, settings.topics.dead_letter)
    counted = Counter(keys_of(predictions)) + Counter(keys_of(dead))
    assert sorted(counted) == sorted(k for k, _ in messages) and set(counted.values()) == {1}
    [dead_letter] = dead
    assert dead_letter.key.decode() == f"{prefix}-unknown" and dead_letter.value == unknown
    assert dead_letter.header_map["dlq.reason"] == b"unknown_schema_id"
    assert str(unknown_id).encode() in dead_letter.header_map["dlq.message"]

    # The older scorer reads v2 records as v1 (the new field dropped): the same rows, the same predictions.
    value = {m.key.decode(): decode_prediction(m.value, client)["prediction"] for m in predictions}
    for i in range(len(rows)):
        assert value[f"{prefix}-v2-{i}"] == pytest.approx(value[f"{prefix}-v1-{i}"], rel=1e-12), i
