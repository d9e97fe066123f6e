"""schemas.control: the ModelUpdateEvent and ScorerStatus dataclasses and their codecs (round trips, the JSON
shape, tolerance of fields from newer issuers; a malformed value is a typed error, never a crash)."""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from typing import Any

import pytest

from schemas.clock import now_ms
from schemas.control import (
    EVENT_TYPES,
    ModelUpdateEvent,
    ScorerStatus,
    decode_model_update,
    decode_scorer_status,
    encode_model_update,
    encode_scorer_status,
)
from schemas.errors import REASONS, DecodeError, SchemaError, ValidationError
from schemas.wire import MODEL_UPDATE_EVENT, SCORER_STATUS

EVENT: dict[str, Any] = {
    "event_id": "6b1f",
    "type": "promoted",
    "model_name": "california_housing_best_model",
    "version": "4",
    "alias": "champion",
    "stage": None,
    "model_uri": "models:/california_housing_best_model/4",
    "issued_at": 1_700_000_000_000,
    "source": "training",
    "canary_fraction": None,
    "decision": None,
    "evidence": None,
}

STATUS: dict[str, Any] = {
    "instance_id": "host-1234",
    "model_name": "california_housing_best_model",
    "model_version": "4",
    "event_id": "6b1f",
    "result": "loaded",
    "detail": None,
    "load_seconds": 0.42,
    "at": 1_700_000_000_500,
    "heartbeat_at": 1_700_000_030_500,
}


def test_model_update_round_trip_and_defaults() -> None:
    value = encode_model_update(EVENT)
    assert json.loads(value) == EVENT
    assert decode_model_update(value) == EVENT
    minimal = {k: EVENT[k] for k in ("event_id", "type", "model_name", "issued_at", "source")}
    decoded = decode_model_update(encode_model_update(minimal))
    assert decoded == {**minimal, "version": None, "alias": None, "stage": None, "model_uri": None,
                       "canary_fraction": None, "decision": None, "evidence": None}


def test_model_update_accepts_single_object_avro() -> None:
    value = MODEL_UPDATE_EVENT.header + MODEL_UPDATE_EVENT.write(EVENT)
    assert decode_model_update(value) == EVENT


def test_model_update_decode_drops_fields_from_newer_issuers() -> None:
    value = json.dumps({**EVENT, "added_in_v2": True}).encode()
    assert decode_model_update(value) == EVENT


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty_message"),
        (b"{", "malformed_json"),
        (b"[]", "not_an_object"),
        (json.dumps({**EVENT, "type": "deleted"}).encode(), "wrong_type"),
        (json.dumps({**EVENT, "issued_at": "now"}).encode(), "wrong_type"),
        (json.dumps({**EVENT, "version": 4}).encode(), "wrong_type"),
        (json.dumps({k: v for k, v in EVENT.items() if k != "model_name"}).encode(), "missing_field"),
        (json.dumps({**EVENT, "event_id": None}).encode(), "null_value"),
        (b"\x00\x00\x00\x00\x01\x02", "unknown_schema_id"),
        (SCORER_STATUS.header + SCORER_STATUS.write(STATUS), "unknown_fingerprint"),
    ],
)
def test_model_update_decode_errors(value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_model_update(value)
    assert info.value.reason == reason


def test_model_update_encode_errors() -> None:
    with pytest.raises(ValidationError) as info:
        encode_model_update({**EVENT, "extra": 1})
    assert (info.value.reason, info.value.field) == ("unknown_field", "extra")
    with pytest.raises(ValidationError) as info:
        encode_model_update({**EVENT, "type": "nope"})
    assert info.value.reason == "wrong_type"
    with pytest.raises(ValidationError) as info:
        encode_model_update({k: v for k, v in EVENT.items() if k != "issued_at"})
    assert (info.value.reason, info.value.field) == ("missing_field", "issued_at")


def test_scorer_status_round_trip_and_errors() -> None:
    assert decode_scorer_status(encode_scorer_status(STATUS)) == STATUS
    assert decode_scorer_status(SCORER_STATUS.header + SCORER_STATUS.write(STATUS)) == STATUS
    minimal = {"instance_id": "i", "model_name": "m", "result": "started", "at": 1}
    assert decode_scorer_status(encode_scorer_status(minimal)) == {
        **minimal,
        "model_version": None,
        "event_id": None,
        "detail": None,
        "load_seconds": None,
        "heartbeat_at": None,  # a status from before heartbeats still decodes
    }
    with pytest.raises(DecodeError) as info:
        decode_scorer_status(json.dumps({**STATUS, "at": 1.5}).encode())
    assert info.value.reason == "wrong_type"
    with pytest.raises(ValidationError):
        encode_scorer_status({**STATUS, "result": None})


# the dataclasses


def test_fields_are_the_schemas_fields_in_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(ModelUpdateEvent)) == MODEL_UPDATE_EVENT.field_names
    assert tuple(f.name for f in dataclasses.fields(ScorerStatus)) == SCORER_STATUS.field_names
    assert EVENT_TYPES == tuple(MODEL_UPDATE_EVENT.raw["fields"][1]["type"]["symbols"])


def test_event_round_trip_keeps_the_json_shape() -> None:
    event = ModelUpdateEvent(**EVENT)
    assert event.as_dict() == EVENT and list(event.as_dict()) == list(EVENT)
    assert event.to_bytes() == encode_model_update(EVENT)  # byte for byte what the dict codec writes
    assert ModelUpdateEvent.from_bytes(event.to_bytes()) == event
    assert ModelUpdateEvent.from_bytes(MODEL_UPDATE_EVENT.header + MODEL_UPDATE_EVENT.write(EVENT)) == event


def test_event_from_bytes_tolerates_fields_from_newer_issuers() -> None:
    value = json.dumps({**EVENT, "added_in_v2": {"nested": [1, 2]}}).encode()
    assert ModelUpdateEvent.from_bytes(value) == ModelUpdateEvent(**EVENT)


def test_event_from_bytes_fills_optional_fields() -> None:
    minimal = {k: EVENT[k] for k in ("event_id", "type", "model_name", "issued_at", "source")}
    event = ModelUpdateEvent.from_bytes(json.dumps(minimal).encode())
    assert (event.version, event.alias, event.stage, event.model_uri) == (None, None, None, None)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"{",
        b"[]",
        b"\xff\xfe",
        b"\x00\x00\x00\x00\x01",
        b"\xc3\x01\x00",
        json.dumps({**EVENT, "type": "deleted"}).encode(),
        json.dumps({**EVENT, "issued_at": None}).encode(),
        json.dumps({k: v for k, v in EVENT.items() if k != "source"}).encode(),
        MODEL_UPDATE_EVENT.header + b"\x02",
    ],
)
def test_malformed_event_is_a_typed_error(value: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        ModelUpdateEvent.from_bytes(value)
    assert isinstance(info.value, SchemaError) and info.value.reason in REASONS


def test_garbage_event_bytes_only_ever_raise_decode_error() -> None:
    rng = random.Random(4321)
    good = ModelUpdateEvent(**EVENT).to_bytes()
    for i in range(300):
        if i % 2:
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        else:  # a good event with a few bytes flipped or cut
            mutated = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            value = bytes(mutated[: rng.randrange(len(mutated) + 1)])
        try:
            ModelUpdateEvent.from_bytes(value)
        except DecodeError as exc:
            assert exc.reason in REASONS


def test_new_event_has_a_fresh_id_and_issue_time() -> None:
    before = now_ms()
    event = ModelUpdateEvent.new(type="promoted", model_name="m", version=7, alias="champion",  # type: ignore[arg-type]
                                 source="test")
    assert uuid.UUID(event.event_id).version == 4
    assert before <= event.issued_at <= now_ms()
    assert event.version == "7"  # a version is always text on the wire
    again = ModelUpdateEvent.new(type="promoted", model_name="m", source="test")
    assert again.event_id != event.event_id
    given = ModelUpdateEvent.new(type="rollback", model_name="m", source="test", event_id="e-1", issued_at=5)
    assert (given.event_id, given.issued_at, given.version) == ("e-1", 5, None)
    assert ModelUpdateEvent.from_bytes(event.to_bytes()) == event


def test_new_event_of_an_unknown_type_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="promoted, reload, rollback"):
        ModelUpdateEvent.new(type="deleted", model_name="m", source="test")


def test_event_is_frozen() -> None:
    event = ModelUpdateEvent(**EVENT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.version = "5"  # type: ignore[misc]


def test_event_of_the_wrong_type_does_not_encode() -> None:
    event = dataclasses.replace(ModelUpdateEvent(**EVENT), issued_at="now")
    with pytest.raises(ValidationError) as info:
        event.to_bytes()
    assert info.value.reason == "wrong_type"


def test_status_round_trip_keeps_the_json_shape() -> None:
    status = ScorerStatus(**STATUS)
    assert status.as_dict() == STATUS and list(status.as_dict()) == list(STATUS)
    assert status.to_bytes() == encode_scorer_status(STATUS)
    assert ScorerStatus.from_bytes(status.to_bytes()) == status
    assert ScorerStatus.from_bytes(SCORER_STATUS.header + SCORER_STATUS.write(STATUS)) == status
    assert ScorerStatus.from_bytes(json.dumps({**STATUS, "added_in_v2": 1}).encode()) == status
    minimal = ScorerStatus(instance_id="i", model_name="m", result="started", at=1)
    assert ScorerStatus.from_bytes(minimal.to_bytes()) == minimal


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"{",
        b"42",
        json.dumps({**STATUS, "at": 1.5}).encode(),
        json.dumps({**STATUS, "load_seconds": "fast"}).encode(),
        json.dumps({k: v for k, v in STATUS.items() if k != "instance_id"}).encode(),
        MODEL_UPDATE_EVENT.header + MODEL_UPDATE_EVENT.write(EVENT),
    ],
)
def test_malformed_status_is_a_typed_error(value: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        ScorerStatus.from_bytes(value)
    assert info.value.reason in REASONS


def test_status_of_the_wrong_type_does_not_encode() -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(ScorerStatus(**STATUS), result=None).to_bytes()


def test_decoded_dicts_build_the_dataclasses() -> None:
    assert ModelUpdateEvent(**decode_model_update(encode_model_update(EVENT))).as_dict() == EVENT
    assert ScorerStatus(**decode_scorer_status(encode_scorer_status(STATUS))).as_dict() == STATUS
