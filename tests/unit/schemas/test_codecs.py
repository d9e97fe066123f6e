"""schemas.codecs: record decoding in all three formats (registry resolution included), record and prediction
encoding, and that no json/fastavro exception ever leaks out of a decoder."""

from __future__ import annotations

import io
import json
import math
import random
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from schemas import topics
from schemas.codecs import (
    HOUSING_RECORD,
    PREDICTION,
    PredictionEncoder,
    PredictionJsonWriter,
    RecordDecoder,
    RecordEncoder,
    WireFormat,
    decode_prediction,
    detect_format,
    encode_record,
    registry_client,
)
from schemas.errors import REASONS, DecodeError, RegistryUnavailableError

RECORD: dict[str, Any] = {
    "longitude": -122.23,
    "latitude": 37.88,
    "housing_median_age": 41.0,
    "total_rooms": 880.0,
    "total_bedrooms": None,
    "population": 322.0,
    "households": 126.0,
    "median_income": 8.3252,
    "ocean_proximity": "NEAR BAY",
    "record_id": "r-1",
    "event_time": 1_700_000_000_123,
}

PREDICTION_VALUE: dict[str, Any] = {
    "record_id": "r-1",
    "prediction": 452600.5,
    "model_name": "california_housing_best_model",
    "model_version": "3",
    "model_alias": "champion",
    "model_stage": None,
    "scored_at": 1_700_000_000_999,
    "source_topic": "housing.records",
    "source_partition": 5,
    "source_offset": 2**40,
    "event_time": None,
    "shadow_prediction": 1.5,
    "shadow_model_version": "4",
    "role": "canary",
}


class CountingRegistry:
    """Wraps a registry client and counts get_schema calls (to prove ids are cached)."""

    def __init__(self, inner: SchemaRegistryClient) -> None:
        self.inner = inner
        self.get_schema_calls = 0

    def get_schema(self, schema_id: int) -> Schema:
        self.get_schema_calls += 1
        return self.inner.get_schema(schema_id)

    def register_schema(self, subject: str, schema: Schema) -> int:
        return self.inner.register_schema(subject, schema)


class DownRegistry:
    def get_schema(self, schema_id: int) -> Schema:
        raise ConnectionError("connection refused")

    def register_schema(self, subject: str, schema: Schema) -> int:
        raise ConnectionError("connection refused")


@pytest.fixture
def registry() -> SchemaRegistryClient:
    client = registry_client("mock://test-codecs")
    assert client is not None
    return client


def _decode_error(decoder: RecordDecoder, value: bytes | None) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decoder.decode(value)
    assert info.value.stage == "decode" and info.value.reason in REASONS
    return info.value


# record round trips


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_record_round_trip(fmt: WireFormat, registry: SchemaRegistryClient) -> None:
    value = encode_record(RECORD, fmt, schema_registry=registry)
    fields, got_fmt, schema_id = RecordDecoder(registry).decode(value)
    assert got_fmt is fmt
    assert fields == RECORD
    assert (schema_id is not None) == (fmt is WireFormat.AVRO_CONFLUENT)


def test_json_encoding_is_compact_and_keeps_what_was_given() -> None:
    value = encode_record({"a": 1, "b": [1, 2]}, WireFormat.JSON)
    assert value == b'{"a":1,"b":[1,2]}'


def test_avro_fills_optional_fields() -> None:
    minimal = {k: v for k, v in RECORD.items() if k not in ("total_bedrooms", "record_id", "event_time")}
    fields, _, _ = RecordDecoder().decode(encode_record(minimal, WireFormat.AVRO_SINGLE_OBJECT))
    assert fields == {**minimal, "total_bedrooms": None, "record_id": None, "event_time": None}


def test_avro_encode_of_an_unfit_record_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="HousingRecord"):
        encode_record({"longitude": 1.0}, WireFormat.AVRO_SINGLE_OBJECT)


def test_confluent_encode_without_registry_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="registry"):
        encode_record(RECORD, WireFormat.AVRO_CONFLUENT)


def test_confluent_registers_under_the_records_subject(registry: SchemaRegistryClient) -> None:
    value = RecordEncoder(registry).encode(RECORD, WireFormat.AVRO_CONFLUENT)
    latest = registry.get_latest_version(topics.RECORDS.value_subject)
    assert int.from_bytes(value[1:5], "big") == latest.schema_id
    assert json.loads(latest.schema.schema_str)["name"] == "HousingRecord"


def test_confluent_schema_id_is_fetched_once(registry: SchemaRegistryClient) -> None:
    value = encode_record(RECORD, WireFormat.AVRO_CONFLUENT, schema_registry=registry)
    counting = CountingRegistry(registry)
    decoder = RecordDecoder(counting)  # type: ignore[arg-type]
    for _ in range(5):
        decoder.decode(value)
    assert counting.get_schema_calls == 1


def test_confluent_older_writer_schema_is_resolved(registry: SchemaRegistryClient) -> None:
    # A producer on a v0 schema without the optional fields: read into our schema with defaults.
    v0 = {
        "type": "record",
        "name": "HousingRecord",
        "namespace": "housing.v1",
        "fields": [f for f in HOUSING_RECORD.raw["fields"] if f["name"] not in ("record_id", "event_time")],
    }
    schema_id = registry.register_schema("old-value", Schema(json.dumps(v0), "AVRO"))
    body = io.BytesIO()
    old = {k: v for k, v in RECORD.items() if k not in ("record_id", "event_time")}
    fastavro.schemaless_writer(body, fastavro.parse_schema(v0), old)
    value = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
    fields, fmt, got_id = RecordDecoder(registry).decode(value)
    assert (fmt, got_id) == (WireFormat.AVRO_CONFLUENT, schema_id)
    assert fields == {**old, "record_id": None, "event_time": None}


def test_confluent_incompatible_writer_schema_is_unknown_schema_id(registry: SchemaRegistryClient) -> None:
    other = {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}
    schema_id = registry.register_schema("other-value", Schema(json.dumps(other), "AVRO"))
    value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02"
    assert _decode_error(RecordDecoder(registry), value).reason == "unknown_schema_id"


def test_confluent_non_avro_schema_is_unknown_schema_id(registry: SchemaRegistryClient) -> None:
    schema_id = registry.register_schema("json-value", Schema('{"type":"object"}', "JSON"))
    value = b"\x00" + schema_id.to_bytes(4, "big") + b"{}"
    error = _decode_error(RecordDecoder(registry), value)
    assert error.reason == "unknown_schema_id" and "JSON" in error.message


def test_confluent_unknown_id_is_remembered(registry: SchemaRegistryClient) -> None:
    counting = CountingRegistry(registry)
    decoder = RecordDecoder(counting)  # type: ignore[arg-type]
    value = b"\x00" + (424242).to_bytes(4, "big") + HOUSING_RECORD.write(RECORD)
    for _ in range(3):
        error = _decode_error(decoder, value)
        assert error.reason == "unknown_schema_id" and "424242" in error.message
    assert counting.get_schema_calls == 1


def test_confluent_without_registry_is_unknown_schema_id() -> None:
    value = b"\x00\x00\x00\x00\x01" + HOUSING_RECORD.write(RECORD)
    error = _decode_error(RecordDecoder(), value)
    assert error.reason == "unknown_schema_id" and "no schema registry" in error.message


def test_registry_down_is_not_a_bad_record() -> None:
    value = b"\x00\x00\x00\x00\x01" + HOUSING_RECORD.write(RECORD)
    with pytest.raises(RegistryUnavailableError) as info:
        RecordDecoder(DownRegistry()).decode(value)  # type: ignore[arg-type]
    assert info.value.retriable is True
    assert not isinstance(info.value, DecodeError)


# decode-stage rejections


def test_empty_and_null_values() -> None:
    assert _decode_error(RecordDecoder(), b"").reason == "empty_message"
    assert _decode_error(RecordDecoder(), None).reason == "empty_message"


def test_size_limit_boundary() -> None:
    decoder = RecordDecoder(max_bytes=1_000)
    good = json.dumps(RECORD).encode()
    exact = good[:-1] + b',"pad":"' + b"x" * (1_000 - len(good) - 9) + b'"}'
    assert len(exact) == 1_000
    fields, _, _ = decoder.decode(exact)
    assert fields["pad"].startswith("x")
    assert _decode_error(decoder, exact[:-2] + b'x"}').reason == "too_large"
    assert RecordDecoder().max_bytes == 1_000_000
    error = _decode_error(RecordDecoder(), b" " * 1_000_001)
    assert error.reason == "too_large" and "1000001" in error.message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"a": "\xff"}', "not_utf8"),
        (b'{"a": 1', "malformed_json"),
        (b"{'a': 1}", "malformed_json"),
        (b"[" * 50_000, "malformed_json"),
        (b'{"a": ' + b"9" * 5_000 + b"}", "malformed_json"),
        (b"", "empty_message"),
        (b"[]", "not_an_object"),
        (b'"x"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"3.5", "not_an_object"),
        (b"\x00\x01", "bad_magic"),
        (b"\xc3\x01" + bytes(8) + b"\x00", "unknown_fingerprint"),
        (HOUSING_RECORD.header, "truncated_avro"),
        (HOUSING_RECORD.header + HOUSING_RECORD.write(RECORD)[:-1], "truncated_avro"),
        (HOUSING_RECORD.header + HOUSING_RECORD.write(RECORD) + b"\x00", "truncated_avro"),
        (HOUSING_RECORD.header + b"\xff" * 80, "truncated_avro"),
        (PREDICTION.header + PREDICTION.write(PREDICTION_VALUE), "unknown_fingerprint"),
    ],
)
def test_decode_rejections(value: bytes, reason: str) -> None:
    assert _decode_error(RecordDecoder(), value).reason == reason


def test_nan_passes_decoding_for_validation_to_reject() -> None:
    fields, fmt, _ = RecordDecoder().decode(b'{"longitude": NaN, "latitude": -Infinity, "x": 1e400}')
    assert fmt is WireFormat.JSON
    assert math.isnan(fields["longitude"]) and fields["latitude"] == -math.inf and fields["x"] == math.inf


@pytest.mark.parametrize("prefix", [b"", b"{", b"\x00", b"\x00\x00\x00\x00\x01", b"\xc3\x01", HOUSING_RECORD.header])
def test_garbage_only_ever_raises_decode_error(prefix: bytes, registry: SchemaRegistryClient) -> None:
    encode_record(RECORD, WireFormat.AVRO_CONFLUENT, schema_registry=registry)  # id 1 exists
    decoder = RecordDecoder(registry)
    rng = random.Random(1234)
    good_body = HOUSING_RECORD.write(RECORD)
    for i in range(300):
        if i % 2:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
        else:  # flip bytes of a good body: the nastier case for a binary reader
            body = bytearray(good_body)
            for _ in range(rng.randrange(1, 6)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            body = bytes(body[: rng.randrange(len(body) + 1)])
        try:
            decoder.decode(prefix + body)
        except DecodeError as exc:
            assert exc.reason in REASONS
            assert exc.__cause__ is None or isinstance(exc.__cause__, Exception)


# predictions


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_prediction_round_trip(fmt: WireFormat, registry: SchemaRegistryClient) -> None:
    value = PredictionEncoder(registry).encode(PREDICTION_VALUE, fmt)
    assert detect_format(value) is fmt
    assert decode_prediction(value, registry) == PREDICTION_VALUE


def test_prediction_json_is_compact() -> None:
    value = PredictionEncoder().encode(PREDICTION_VALUE, WireFormat.JSON)
    assert b" " not in value and json.loads(value) == PREDICTION_VALUE


def test_prediction_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        PredictionEncoder().encode({**PREDICTION_VALUE, "prediction": math.nan}, WireFormat.JSON)


def test_prediction_confluent_registers_once_under_the_topic_subject(registry: SchemaRegistryClient) -> None:
    encoder = PredictionEncoder(registry)
    assert encoder.subject == "housing.predictions-value"
    first = encoder.encode(PREDICTION_VALUE, WireFormat.AVRO_CONFLUENT)
    second = encoder.encode({**PREDICTION_VALUE, "record_id": "r-2"}, WireFormat.AVRO_CONFLUENT)
    assert first[:5] == second[:5]
    latest = registry.get_latest_version("housing.predictions-value")
    assert latest.version == 1 and int.from_bytes(first[1:5], "big") == latest.schema_id
    assert PredictionEncoder(registry, topic="t-123").subject == "t-123-value"
    assert PredictionEncoder(registry, topic="t", subject="s").subject == "s"


def test_prediction_confluent_without_registry_fails_loudly() -> None:
    with pytest.raises(ValueError, match="registry"):
        PredictionEncoder().encode(PREDICTION_VALUE, WireFormat.AVRO_CONFLUENT)


def test_prediction_confluent_registry_down() -> None:
    with pytest.raises(RegistryUnavailableError):
        PredictionEncoder(DownRegistry()).encode(PREDICTION_VALUE, WireFormat.AVRO_CONFLUENT)  # type: ignore[arg-type]


def test_decode_prediction_rejects_a_record() -> None:
    with pytest.raises(DecodeError) as info:
        decode_prediction(encode_record(RECORD, WireFormat.AVRO_SINGLE_OBJECT))
    assert info.value.reason == "unknown_fingerprint"


@pytest.mark.parametrize("seed", range(5))
def test_batch_json_writer_writes_what_the_generic_encoder_writes(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        common = {"model_name": rng.choice(["housing", "é\u2603\"\\"]), "model_version": str(rng.randint(1, 99)),
                  "model_alias": rng.choice([None, "champion"]), "model_stage": rng.choice([None, "Production"]),
                  "scored_at": rng.randint(0, 2**62), "shadow_model_version": rng.choice([None, "3"]),
                  "role": rng.choice(["champion", "canary"])}
        writer = PredictionJsonWriter(**common)
        for _ in range(20):
            varying = {
                "record_id": rng.choice(["r-1", "é\u2603\"\\\n", "", "x" * 300]),
                "prediction": rng.choice([0.0, -1.5, 1e300, 123456.789, rng.uniform(-1e6, 1e6), 5e-324, 1e20]),
                "source_topic": rng.choice(["housing.records", "other"]),
                "source_partition": rng.randint(0, 100), "source_offset": rng.randint(0, 2**62),
                "event_time": rng.choice([None, rng.randint(0, 2**62)]),
                "shadow_prediction": rng.choice([None, rng.uniform(-1e6, 1e6)]),
            }
            value = {name: {**common, **varying}[name] for name in PREDICTION.field_names}
            assert writer.write(**varying) == PredictionEncoder().encode(value, WireFormat.JSON)
            assert json.loads(writer.write(**varying)) == value
