"""Edges of the wire contract that mutation testing found untested: registry answers other than a schema or an
error, the negative cache's bound, byte order of the Confluent frame, size limits at the exact boundary, the
schema files read afresh, and control events that keep what they were given (docs/mutation-report.md)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from schemas import registry as registry_module
from schemas.codecs import PredictionEncoder, RecordEncoder, WireFormat, decode_prediction, encode_record
from schemas.control import (
    ModelUpdateEvent,
    ScorerStatus,
    decode_model_update,
    encode_model_update,
    encode_scorer_status,
)
from schemas.errors import DecodeError, RegistryUnavailableError, ValidationError
from schemas.examples import EXAMPLE_RECORD
from schemas.registry import SchemaRegistration, WriterSchemas
from schemas.versions import version_from_uri, version_number
from schemas.wire import (
    DEFAULT_MAX_BYTES,
    HOUSING_RECORD,
    MODEL_UPDATE_EVENT,
    PREDICTION,
    SCORER_STATUS,
    AvroSchema,
    confluent_frame,
    confluent_schema_id,
    read_single_object,
)


class ScriptedRegistry:
    """get_schema answers from a script; register_schema records what it was given."""

    def __init__(self, *answers: object, register: object = 41) -> None:
        self.answers = list(answers)
        self.get_calls = 0
        self.registered: list[tuple[str, Schema]] = []
        self.register_answer = register

    def get_schema(self, schema_id: int) -> object:
        self.get_calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def register_schema(self, subject: str, schema: Schema) -> int:
        if isinstance(self.register_answer, BaseException):
            raise self.register_answer
        self.registered.append((subject, schema))
        return int(self.register_answer)  # type: ignore[call-overload]


def _unknown(schemas: WriterSchemas, schema_id: int) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        schemas.resolve(schema_id, HOUSING_RECORD)
    assert caught.value.reason == "unknown_schema_id"
    return caught.value


# --- writer schemas: every answer that is not a usable Avro schema is the record's fault, and remembered ----

@pytest.mark.parametrize(("answer", "why"), [
    (None, "is not in the registry"),
    (Schema('{"type": "object"}', "JSON"), "is a JSON schema, not Avro"),
    (Schema("{not json", "AVRO"), "is not a valid Avro schema"),
    (Schema('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}', "AVRO"),
     "is not a valid Avro schema"),
], ids=["none", "json-schema", "unparseable", "bad-avro-type"])
def test_an_unusable_answer_is_unknown_schema_id_and_remembered(answer: object, why: str) -> None:
    registry = ScriptedRegistry(answer)
    schemas = WriterSchemas(registry)  # type: ignore[arg-type]
    for _ in range(2):
        error = _unknown(schemas, 9)
        assert f"schema id 9 {why}" in error.message
    assert registry.get_calls == 1  # the second answer came from the negative cache


def test_an_answer_without_a_schema_type_is_read_as_avro() -> None:
    class Untyped:
        schema_str = json.dumps(HOUSING_RECORD.raw)

    schemas = WriterSchemas(ScriptedRegistry(Untyped()))  # type: ignore[arg-type]
    assert schemas.resolve(3, HOUSING_RECORD) is None  # the reader schema itself


def test_a_lowercase_avro_schema_type_is_avro() -> None:
    schemas = WriterSchemas(ScriptedRegistry(Schema(json.dumps(HOUSING_RECORD.raw), "avro")))  # type: ignore[arg-type]
    assert schemas.resolve(3, HOUSING_RECORD) is None


def test_a_resolvable_older_writer_is_cached_as_the_parsed_writer() -> None:
    older = {**HOUSING_RECORD.raw, "fields": [f for f in HOUSING_RECORD.raw["fields"] if f["name"] != "event_time"]}
    registry = ScriptedRegistry(Schema(json.dumps(older), "AVRO"))
    schemas = WriterSchemas(registry)  # type: ignore[arg-type]
    writer = schemas.resolve(5, HOUSING_RECORD)
    assert writer is not None and [f["name"] for f in writer["fields"]][-1] == "record_id"
    assert schemas.resolve(5, HOUSING_RECORD) is writer
    assert registry.get_calls == 1


@pytest.mark.parametrize("failure", [RuntimeError("tls handshake"), OSError("no route")])
def test_a_registry_error_names_the_id_and_the_cause(failure: Exception) -> None:
    with pytest.raises(RegistryUnavailableError) as caught:
        WriterSchemas(ScriptedRegistry(failure)).resolve(12, HOUSING_RECORD)  # type: ignore[arg-type]
    assert "id 12" in str(caught.value) and str(failure) in str(caught.value)


def test_the_negative_cache_is_cleared_when_full_not_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_NEGATIVE_CACHE_LIMIT", 3)
    registry = ScriptedRegistry(*[None] * 10)
    schemas = WriterSchemas(registry)  # type: ignore[arg-type]
    for schema_id in (1, 2, 3):
        _unknown(schemas, schema_id)
    _unknown(schemas, 1)
    assert registry.get_calls == 3  # 3 ids fit: 1 is still remembered
    _unknown(schemas, 4)  # the 4th clears the cache first
    _unknown(schemas, 1)
    assert registry.get_calls == 5


def test_no_registry_names_the_id() -> None:
    assert "id 77" in _unknown(WriterSchemas(None), 77).message


# --- registration --------------------------------------------------------------------------------------------

def test_registration_registers_our_schema_as_avro_once() -> None:
    registry = ScriptedRegistry(register=41)
    registration = SchemaRegistration(registry, "s-value", PREDICTION)  # type: ignore[arg-type]
    assert registration.schema_id() == 41 and registration.schema_id() == 41
    [(subject, schema)] = registry.registered
    assert subject == "s-value" and schema.schema_type == "AVRO"
    assert json.loads(schema.schema_str or "") == PREDICTION.raw


def test_registration_failure_names_the_subject_and_the_cause() -> None:
    registry = ScriptedRegistry(register=ConnectionError("refused"))
    with pytest.raises(RegistryUnavailableError) as caught:
        SchemaRegistration(registry, "s-value", PREDICTION).schema_id()  # type: ignore[arg-type]
    assert "s-value" in str(caught.value) and "refused" in str(caught.value)


def test_registration_without_a_registry_names_the_subject() -> None:
    with pytest.raises(ValueError, match="s-value"):
        SchemaRegistration(None, "s-value", PREDICTION).schema_id()


def test_encode_record_registers_under_the_subject_given() -> None:
    registry = ScriptedRegistry(register=300)
    value = encode_record(EXAMPLE_RECORD, WireFormat.AVRO_CONFLUENT, schema_registry=registry,  # type: ignore[arg-type]
                          subject="custom-value")
    assert [subject for subject, _ in registry.registered] == ["custom-value"]
    assert value[:5] == b"\x00\x00\x00\x01\x2c"


# --- framing -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("schema_id", "header"), [
    (1, b"\x00\x00\x00\x00\x01"), (256, b"\x00\x00\x00\x01\x00"), (0x01020304, b"\x00\x01\x02\x03\x04"),
    (2**32 - 1, b"\x00\xff\xff\xff\xff"),
])
def test_confluent_frame_is_big_endian_both_ways(schema_id: int, header: bytes) -> None:
    assert confluent_frame(schema_id, b"body") == header + b"body"
    assert confluent_schema_id(header + b"body") == schema_id


def test_an_unknown_fingerprint_names_both_fingerprints() -> None:
    other = b"\xc3\x01" + bytes(range(1, 9)) + HOUSING_RECORD.write(EXAMPLE_RECORD)
    with pytest.raises(DecodeError) as caught:
        read_single_object(other, HOUSING_RECORD)
    assert caught.value.reason == "unknown_fingerprint"
    assert bytes(range(1, 9)).hex() in caught.value.message and HOUSING_RECORD.fingerprint.hex() in caught.value.message


def test_trailing_bytes_are_counted() -> None:
    with pytest.raises(DecodeError) as caught:
        HOUSING_RECORD.read(HOUSING_RECORD.write(EXAMPLE_RECORD) + b"abc")
    assert caught.value.reason == "truncated_avro" and "3 trailing bytes" in caught.value.message


def test_an_unreadable_body_names_the_exception_type() -> None:
    with pytest.raises(DecodeError) as caught:
        HOUSING_RECORD.read(b"\x01")
    assert caught.value.reason == "truncated_avro" and "Error" in caught.value.message.split(":")[1]


@pytest.mark.parametrize(("file_name", "constant"), [
    ("housing_record.avsc", HOUSING_RECORD), ("prediction.avsc", PREDICTION),
    ("model_update_event.avsc", MODEL_UPDATE_EVENT), ("scorer_status.avsc", SCORER_STATUS),
])
def test_a_schema_read_afresh_equals_the_module_constant(file_name: str, constant: AvroSchema) -> None:
    fresh = AvroSchema.load(file_name)
    assert (fresh.raw, fresh.canonical, fresh.fingerprint, fresh.header) == (
        constant.raw, constant.canonical, constant.fingerprint, constant.header)
    assert (fresh.field_names, fresh.defaults, fresh.required) == (
        constant.field_names, constant.defaults, constant.required)
    assert fresh.header == b"\xc3\x01" + fresh.fingerprint and len(fresh.fingerprint) == 8
    assert fresh.full_name == f"housing.v1.{fresh.raw['name']}"


def test_the_parsed_parts_of_a_schema() -> None:
    schema = AvroSchema({
        "type": "record", "name": "T", "fields": [
            {"name": "a", "type": "long"}, {"name": "b", "type": ["null", "string"], "default": None},
            {"name": "c", "type": "string", "default": "x"},
        ]})
    assert schema.field_names == ("a", "b", "c")
    assert schema.defaults == {"b": None, "c": "x"}
    assert schema.required == ("a",)
    assert schema.full_name == "T"  # no namespace: no leading dot
    assert schema.header[:2] == b"\xc3\x01"
    assert json.loads(schema.schema_str) == schema.raw and " " not in schema.schema_str
    assert schema.read(schema.write({"a": 1})) == {"a": 1, "b": None, "c": "x"}


# --- codecs --------------------------------------------------------------------------------------------------

def test_an_empty_prediction_is_empty_message() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_prediction(b"")
    assert caught.value.reason == "empty_message"


def test_an_unknown_wire_format_is_named() -> None:
    with pytest.raises(ValueError, match="unknown wire format 'xml'"):
        PredictionEncoder().encode({}, "xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown wire format 'xml'"):
        RecordEncoder().encode({}, "xml")  # type: ignore[arg-type]


def test_prediction_json_is_utf8_of_ascii_escapes() -> None:
    value = PredictionEncoder().encode({"record_id": "é", "prediction": 1.0}, WireFormat.JSON)
    assert value == b'{"record_id":"\\u00e9","prediction":1.0}'


# --- control events ------------------------------------------------------------------------------------------

def test_a_new_event_keeps_every_field_it_was_given() -> None:
    event = ModelUpdateEvent.new(type="promoted", model_name="m", version=7, alias="champion", stage="Production",  # type: ignore[arg-type]
                                 model_uri="models:/m/7", source="training", event_id="e-1", issued_at=5)
    assert event.as_dict() == {
        "event_id": "e-1", "type": "promoted", "model_name": "m", "version": "7", "alias": "champion",
        "stage": "Production", "model_uri": "models:/m/7", "issued_at": 5, "source": "training",
        "canary_fraction": None, "decision": None, "evidence": None,
    }
    assert ModelUpdateEvent.new(type="reload", model_name="m", source="s", issued_at=0).issued_at == 0


def test_control_json_is_compact_and_refuses_nan() -> None:
    value = encode_model_update({"event_id": "e", "type": "reload", "model_name": "m", "issued_at": 1, "source": "s"})
    assert value == (b'{"event_id":"e","type":"reload","model_name":"m","version":null,"alias":null,"stage":null,'
                     b'"model_uri":null,"issued_at":1,"source":"s","canary_fraction":null,"decision":null,'
                     b'"evidence":null}')
    with pytest.raises(ValueError):
        encode_scorer_status({"instance_id": "i", "model_name": "m", "result": "loaded", "at": 1,
                              "load_seconds": math.nan})


def test_a_null_required_control_field_names_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        encode_model_update({"event_id": None, "type": "reload", "model_name": "m", "issued_at": 1, "source": "s"})
    assert (caught.value.reason, caught.value.field) == ("null_value", "event_id")
    with pytest.raises(DecodeError) as decoded:
        ScorerStatus.from_bytes(b'{"instance_id":"i","model_name":null,"result":"r","at":1}')
    assert (decoded.value.reason, decoded.value.field) == ("null_value", "model_name")


def test_a_wrong_control_type_is_wrong_type() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_model_update(b'{"event_id":"e","type":"reload","model_name":"m","issued_at":"soon","source":"s"}')
    assert caught.value.reason == "wrong_type" and "does not validate" in caught.value.message


def test_control_size_limit_is_exact() -> None:
    event = b'{"event_id":"e","type":"reload","model_name":"m","issued_at":1,"source":"s"}'
    at_limit = event + b" " * (DEFAULT_MAX_BYTES - len(event))
    assert decode_model_update(at_limit)["event_id"] == "e"
    with pytest.raises(DecodeError) as caught:
        decode_model_update(at_limit + b" ")
    assert caught.value.reason == "too_large"


# --- versions ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("uri", "version"), [
    ("models:/m/7", "7"), ("models:/m@champion", None), ("models:/m/Production", None), ("runs:/abc/model", None),
    (None, None), ("", None), ("models:/m/7/extra", None),
])
def test_version_from_uri(uri: str | None, version: str | None) -> None:
    assert version_from_uri(uri) == version


@pytest.mark.parametrize(("version", "number"), [("7", 7), (None, 0), ("v7", 0), ("12", 12)])
def test_version_number(version: Any, number: int) -> None:
    assert version_number(version) == number
