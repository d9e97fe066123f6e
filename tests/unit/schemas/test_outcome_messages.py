"""schemas.outcomes at its edges: the bounds that are still accepted, the exact dead-letter messages (they
travel in the ``dlq.message`` header), an older writer schema resolved, and the bytes the encoder writes."""

from __future__ import annotations

import io
import json
import uuid

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema

from schemas.codecs import WireFormat, registry_client
from schemas.outcomes import (
    DEFAULT_OUTCOMES_SUBJECT,
    MAX_OUTCOME_BYTES,
    Outcome,
    OutcomeDecoder,
    OutcomeEncoder,
    OutcomeError,
    outcome_from_fields,
)
from schemas.validation import MAX_RECORD_ID_CHARS
from schemas.wire import confluent_frame

GOOD = Outcome("rec-1", 452600.0, 1_700_000_000_000)


def _refused(fields: dict[str, object]) -> tuple[str, str]:
    with pytest.raises(OutcomeError) as caught:
        outcome_from_fields(fields)
    return caught.value.reason, caught.value.message


def _fields(**changes: object) -> dict[str, object]:
    return {**GOOD.as_dict(), **changes}


def test_an_unknown_reason_code_names_itself() -> None:
    with pytest.raises(ValueError, match="^unknown outcome reason 'no_such_reason'$"):
        OutcomeError("no_such_reason", "x")


def test_the_error_text_is_the_message_and_the_header_copy_is_cut_at_300() -> None:
    error = OutcomeError("too_large", "m" * 301)
    assert str(error) == "m" * 301
    assert error.message == "m" * 300
    assert OutcomeError("too_large", "short").message == "short"


@pytest.mark.parametrize(("changes", "reason", "message"), [
    ({"zeta": 1, "extra": 2}, "unknown_field", "outcome has unknown field 'extra'"),
    ({"record_id": 7}, "wrong_type", "record_id must be a string, got int"),
    ({"record_id": "r" * (MAX_RECORD_ID_CHARS + 1)}, "bad_record_id",
     f"record_id must be 1..{MAX_RECORD_ID_CHARS} characters, got {MAX_RECORD_ID_CHARS + 1}"),
    ({"actual": "12"}, "wrong_type", "actual must be a number, got str '12'"),
    ({"actual": 10**400}, "not_finite_actual", "actual is too large for a double"),
    ({"actual": -0.5}, "negative_actual", "actual must be >= 0, got -0.5"),
    ({"observed_at": 1.5}, "wrong_type", "observed_at must be an integer, got float 1.5"),
    ({"observed_at": -1}, "bad_observed_at", "observed_at must be 0 <= t < 2**63 ms, got -1"),
    ({"observed_at": 2**63}, "bad_observed_at", f"observed_at must be 0 <= t < 2**63 ms, got {2**63}"),
])
def test_a_refused_field_is_named_with_its_value(changes: dict[str, object], reason: str, message: str) -> None:
    assert _refused(_fields(**changes)) == (reason, message)


@pytest.mark.parametrize("changes", [
    {"record_id": "r" * MAX_RECORD_ID_CHARS},
    {"actual": 0.0},
    {"actual": 0.5},
    {"observed_at": 0},
    {"observed_at": 2**63 - 1},
])
def test_the_bounds_themselves_are_accepted(changes: dict[str, object]) -> None:
    assert outcome_from_fields(_fields(**changes)).as_dict() == _fields(**changes)


@pytest.mark.parametrize(("value", "message"), [(None, "outcome value is null"), (b"", "outcome value is empty")])
def test_an_empty_value_says_whether_it_was_null(value: bytes | None, message: str) -> None:
    with pytest.raises(OutcomeError) as caught:
        OutcomeDecoder().decode(value)
    assert (caught.value.reason, caught.value.message) == ("empty_message", message)


def test_a_value_of_exactly_the_size_limit_is_read() -> None:
    body = b'{"record_id":"a","actual":1.0,"observed_at":1}'
    value = body + b" " * (MAX_OUTCOME_BYTES - len(body))
    assert len(value) == MAX_OUTCOME_BYTES
    assert OutcomeDecoder().decode(value) == Outcome("a", 1.0, 1)


def test_a_confluent_outcome_written_with_another_field_order_is_resolved_by_its_writer_schema() -> None:
    registry = registry_client("mock://outcome-writer-order")
    writer = {"type": "record", "name": "Outcome", "namespace": "housing.v1", "fields": [
        {"name": "observed_at", "type": "long"}, {"name": "actual", "type": "double"},
        {"name": "record_id", "type": "string"}]}
    assert registry is not None
    schema_id = registry.register_schema("reordered-value", Schema(json.dumps(writer), "AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(writer), GOOD.as_dict())
    assert OutcomeDecoder(registry).decode(confluent_frame(schema_id, body.getvalue())) == GOOD


@pytest.mark.parametrize("subject", [None, "custom-outcomes-value"])
def test_the_confluent_encoder_registers_under_its_subject(subject: str | None) -> None:
    registry = registry_client(f"mock://outcome-subject-{uuid.uuid4().hex}")  # a store of its own
    assert registry is not None
    encoder = OutcomeEncoder(registry) if subject is None else OutcomeEncoder(registry, subject=subject)
    encoder.encode(GOOD, WireFormat.AVRO_CONFLUENT)
    assert registry.get_subjects() == [subject or DEFAULT_OUTCOMES_SUBJECT]


def test_json_is_written_compact() -> None:
    assert OutcomeEncoder().encode(GOOD, WireFormat.JSON) == (
        b'{"record_id":"rec-1","actual":452600.0,"observed_at":1700000000000}')


def test_an_unknown_wire_format_is_named() -> None:
    with pytest.raises(ValueError, match="^unknown wire format 'yaml'$"):
        OutcomeEncoder().encode(GOOD, "yaml")  # type: ignore[arg-type]
