"""Edges of the codecs that mutation testing found untested: a prediction written before the role field (single
object, prediction_v1) still decodes, the batch JSON writer keeps record ids holding spaces and tabs whole, and a
control event of the wrong type is named with fastavro's words on one line."""

from __future__ import annotations

import json

import pytest

from schemas.codecs import PredictionJsonWriter, decode_prediction
from schemas.control import encode_model_update
from schemas.errors import DecodeError, ValidationError
from schemas.wire import PREDICTION_V1, loads_json_object

V1_PREDICTION = {
    "record_id": "r-1", "prediction": 123456.5, "model_name": "m", "model_version": "3", "model_alias": "champion",
    "model_stage": None, "scored_at": 1_700_000_000_000, "source_topic": "housing.records", "source_partition": 2,
    "source_offset": 41, "event_time": None, "shadow_prediction": None, "shadow_model_version": None,
}
# CRC-64-AVRO of prediction_v1.avsc's canonical form, little-endian (pinned in tests/unit/schemas/test_fingerprints.py)
V1_HEADER = b"\xc3\x01" + bytes.fromhex("a64566922825ea49")


def test_a_prediction_written_before_the_role_field_decodes_as_the_champions() -> None:
    value = V1_HEADER + PREDICTION_V1.write(V1_PREDICTION)
    assert PREDICTION_V1.header == V1_HEADER
    assert decode_prediction(value) == {**V1_PREDICTION, "role": "champion"}


def test_a_v1_header_with_a_truncated_body_is_a_decode_error() -> None:
    body = PREDICTION_V1.write(V1_PREDICTION)
    with pytest.raises(DecodeError) as info:
        decode_prediction(V1_HEADER + body[:5])
    assert info.value.reason == "truncated_avro"


def test_the_batch_writer_keeps_ids_with_whitespace_whole() -> None:
    writer = PredictionJsonWriter(model_name="m", model_version="5", model_alias=None, model_stage=None,
                                  scored_at=7, shadow_model_version=None)
    ids = ["a b", "tab\there", "x\u00a0y", "nl\nid"]
    outputs = writer.write_many(ids, [1.0, 2.0, 3.0, 4.0], ["t"] * 4, [0] * 4, [1, 2, 3, 4], [None] * 4)
    assert outputs == [writer.write(rid, float(i + 1), "t", 0, i + 1, None, None) for i, rid in enumerate(ids)]
    assert [json.loads(o)["record_id"] for o in outputs] == ids
    assert writer.write_many([], [], [], [], [], []) == []


def test_an_event_of_the_wrong_type_is_named_in_fastavros_words_on_one_line() -> None:
    event = {"event_id": "6b1f", "type": "promoted", "model_name": "m", "version": "4", "alias": "champion",
             "model_uri": "models:/m/4", "issued_at": "now", "source": "training"}
    with pytest.raises(ValidationError) as info:
        encode_model_update(event)
    assert info.value.reason == "wrong_type"
    assert info.value.message == ('housing.v1.ModelUpdateEvent does not validate: [ "housing.v1.ModelUpdateEvent.'
                                  "issued_at is <now> of type <class 'str'> expected long\" ]")


def test_a_writer_without_a_role_writes_the_champions() -> None:
    writer = PredictionJsonWriter(model_name="m", model_version="5", model_alias=None, model_stage=None,
                                  scored_at=7, shadow_model_version=None)
    assert json.loads(writer.write("r", 1.0, "t", 0, 1, None, None))["role"] == "champion"


def test_a_long_json_error_is_cut_to_120_characters() -> None:
    # an integer literal over Python's digit limit: json's ValueError text is far over 120 characters
    with pytest.raises(DecodeError) as info:
        loads_json_object(b'{"a": 1' + b"0" * 5000 + b"}")
    assert info.value.reason == "malformed_json"
    message = info.value.message
    assert message.startswith("malformed JSON: 'Exceeds the limit (4300 digits) for integer string conversion")
    assert message.endswith("...") and len(message) == len("malformed JSON: ") + 120
