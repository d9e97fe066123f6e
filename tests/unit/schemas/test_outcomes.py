"""schemas.outcomes: the Outcome contract in all three wire formats, and every way an outcome is refused."""

from __future__ import annotations

import json

import pytest

from schemas.codecs import WireFormat, registry_client
from schemas.outcomes import OUTCOME, OUTCOME_REASONS, Outcome, OutcomeDecoder, OutcomeEncoder, OutcomeError

GOOD = Outcome("rec-1", 452600.0, 1_700_000_000_000)


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_round_trip_in_every_format(fmt: WireFormat) -> None:
    registry = registry_client("mock://outcomes-test")
    value = OutcomeEncoder(registry).encode(GOOD, fmt)
    assert OutcomeDecoder(registry).decode(value) == GOOD


def test_an_integer_actual_is_a_number() -> None:
    assert OutcomeDecoder().decode(b'{"record_id":"a","actual":5,"observed_at":1}').actual == 5.0


@pytest.mark.parametrize(("value", "reason"), [
    (None, "empty_message"),
    (b"", "empty_message"),
    (b"x" * 100_001, "too_large"),
    (b"{not json", "malformed_json"),
    (b"[1]", "not_an_object"),
    (b"\xff\xfe", "not_utf8"),
    (b"\xc3\x01" + b"\x00" * 8, "unknown_fingerprint"),
    (OUTCOME.header + b"\x02", "truncated_avro"),
    (b"\x00\x00\x00\x00\x07abc", "unknown_schema_id"),
    (b'{"record_id":"a","actual":1}', "missing_field"),
    (b'{"record_id":"a","actual":null,"observed_at":1}', "missing_field"),
    (b'{"record_id":"a","actual":1,"observed_at":1,"x":2}', "unknown_field"),
    (b'{"record_id":"a","actual":"1","observed_at":1}', "wrong_type"),
    (b'{"record_id":"a","actual":true,"observed_at":1}', "wrong_type"),
    (b'{"record_id":7,"actual":1,"observed_at":1}', "wrong_type"),
    (b'{"record_id":"a","actual":1,"observed_at":1.5}', "wrong_type"),
    (b'{"record_id":"a","actual":NaN,"observed_at":1}', "not_finite_actual"),
    (b'{"record_id":"a","actual":Infinity,"observed_at":1}', "not_finite_actual"),
    (b'{"record_id":"a","actual":1e400,"observed_at":1}', "not_finite_actual"),
    (b'{"record_id":"a","actual":-0.5,"observed_at":1}', "negative_actual"),
    (b'{"record_id":"","actual":1,"observed_at":1}', "bad_record_id"),
    (json.dumps({"record_id": "a" * 257, "actual": 1, "observed_at": 1}).encode(), "bad_record_id"),
    (b'{"record_id":"a","actual":1,"observed_at":-1}', "bad_observed_at"),
])
def test_bad_outcomes_are_refused_with_their_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(OutcomeError) as info:
        OutcomeDecoder().decode(value)
    assert info.value.reason == reason
    assert reason in OUTCOME_REASONS


def test_an_unknown_reason_code_is_a_bug() -> None:
    with pytest.raises(ValueError):
        OutcomeError("no_such_reason", "x")


def test_nan_is_not_encoded_as_json() -> None:
    with pytest.raises(ValueError):
        OutcomeEncoder().encode(Outcome("a", float("nan"), 1), WireFormat.JSON)
