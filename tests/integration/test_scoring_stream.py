"""The scorer in-process on a mixed stream (JSON, Avro single-object, Avro Confluent wire format).

N records in -> exactly N outputs across predictions and dead letters, each prediction in its record's wire
format, naming the model version in its value and headers, and equal to what the registered model predicts
offline for the same rows (loaded independently with mlflow.sklearn, on a training.data-style frame).

confluent-kafka 2.16's ``SchemaRegistryClient.new_client({"url": "mock://x"})`` gives every call its own empty
in-memory store (nothing is shared per URL), so the test hands the scorer the same mock client its producer
registered with, by patching ``consumer.kafka.loop.registry_client``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

import consumer.kafka.loop
from config.settings import Settings
from consumer.service import ScorerService
from schemas import topics as topic_names
from schemas.codecs import RecordEncoder, WireFormat, decode_prediction, detect_format, registry_client
from tests.conftest import RegisteredModel
from tests.helpers import housing_rows, keys_of, read_to_end, wait_for
from training.data import features_frame, load_housing

pytestmark = pytest.mark.integration

FORMATS = (WireFormat.JSON, WireFormat.AVRO_SINGLE_OBJECT, WireFormat.AVRO_CONFLUENT)


def produce_raw(settings: Settings, messages: Iterable[tuple[str, bytes]]) -> dict[str, tuple[int, int]]:
    """Produce (key, value) pairs to the records topic; returns key -> (partition, offset) from delivery reports."""
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 5, "enable.idempotence": True,
                         "compression.type": "lz4", "message.max.bytes": 3_000_000})
    delivered: dict[str, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(f"{message.key()!r}: {error}")
        else:
            delivered[message.key().decode()] = (message.partition(), message.offset())

    for key, value in messages:
        producer.produce(settings.topics.records, key=key.encode(), value=value, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, f"records not delivered: {errors[:3]}"
    return delivered


def offline_predictions(model: RegisteredModel, start: int, count: int) -> np.ndarray:
    """The registered version's predictions for CSV rows [start, start+count), computed without the scorer."""
    import mlflow.artifacts
    import mlflow.sklearn
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=model.tracking_uri, registry_uri=model.tracking_uri)
    location = client.get_model_version_download_uri(model.model_name, model.version)
    local = mlflow.artifacts.download_artifacts(artifact_uri=location, tracking_uri=model.tracking_uri)
    estimator = mlflow.sklearn.load_model(local)
    rows = load_housing().iloc[start:start + count]
    return np.asarray(estimator.predict(features_frame(rows)), dtype=np.float64)


def test_mixed_formats_every_record_one_output_equal_to_offline_predictions(
        scorer_settings: Settings, registered_model: RegisteredModel, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"mock://stream-{uuid.uuid4().hex[:8]}"
    shared_registry = registry_client(url)
    original = consumer.kafka.loop.registry_client
    monkeypatch.setattr(consumer.kafka.loop, "registry_client",
                        lambda u, config=None: shared_registry if u == url else original(u, config))
    settings = scorer_settings.replace(schema_registry_url=url, **{"scorer.batch_max_records": 64})
    encoder = RecordEncoder(shared_registry, subject=f"{settings.topics.records}-value")

    count, start = 450, 1000
    rows = housing_rows(count, start)
    prefix = uuid.uuid4().hex[:6]
    messages: list[tuple[str, bytes]] = []
    fmt_of: dict[str, WireFormat] = {}
    for i, row in enumerate(rows):
        key = f"{prefix}-{i}"
        fmt_of[key] = FORMATS[i % len(FORMATS)]
        messages.append((key, encoder.encode({**row, "record_id": key, "event_time": 1_700_000_000_000 + i},
                                             fmt_of[key])))
    bad = {f"bad-json-{prefix}": b'{"longitude": ', f"bad-avro-{prefix}": encoder.encode(
        {**rows[0], "latitude": 99.0}, WireFormat.AVRO_SINGLE_OBJECT)}
    messages[100:100] = list(bad.items())
    positions = produce_raw(settings, messages)

    service = ScorerService(settings)
    service.start()
    try:
        assert wait_for(lambda: service.state.counts["consumed"] >= len(messages) or not service.running, 60), \
            service.state.counts
        assert service.state.fatal_error is None
    finally:
        service.stop()

    bootstrap = settings.kafka.bootstrap_servers
    predictions = read_to_end(bootstrap, settings.topics.predictions)
    dead = read_to_end(bootstrap, settings.topics.dead_letter)
    counted = Counter(keys_of(predictions)) + Counter(keys_of(dead))
    assert sorted(counted) == sorted(k for k, _ in messages) and set(counted.values()) == {1}, \
        f"not exactly one output per input: {len(predictions)} predictions, {len(dead)} dead letters"
    assert set(keys_of(dead)) == set(bad)

    expected = offline_predictions(registered_model, start, count)
    version = registered_model.version
    for message in predictions:
        key = message.key.decode()
        i = int(key.rsplit("-", 1)[1])
        headers = message.header_map
        assert headers[topic_names.HEADER_MODEL_VERSION] == version.encode()
        assert headers[topic_names.HEADER_MODEL_NAME] == registered_model.model_name.encode()
        assert headers[topic_names.HEADER_FORMAT] == fmt_of[key].value.encode(), key
        assert detect_format(message.value) is fmt_of[key], f"{key}: {fmt_of[key]} in, not out"
        value = decode_prediction(message.value, shared_registry)
        assert value["record_id"] == key
        assert value["model_name"] == registered_model.model_name and value["model_version"] == version
        assert value["model_alias"] == "champion"
        assert (value["source_topic"], value["source_partition"], value["source_offset"]) == \
            (settings.topics.records, *positions[key])
        assert value["event_time"] == 1_700_000_000_000 + i
        assert value["prediction"] == pytest.approx(expected[i], rel=1e-6), f"{key} ({fmt_of[key]})"
