"""The dlq.message text of each validation rejection: it names the field, what was found and what is allowed, so
an operator can read a dead letter without the code (mutation testing found the wording unpinned)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.errors import ValidationError
from schemas.examples import EXAMPLE_RECORD
from schemas.validation import validate_record


@pytest.mark.parametrize(("change", "message"), [
    ({"latitude": 50.0}, "field 'latitude' = 50.0 is outside California [32.0, 42.5]"),
    ({"longitude": -130.0}, "field 'longitude' = -130.0 is outside California [-124.6, -114.0]"),
    ({"median_income": 101.0}, "field 'median_income' = 101.0 is out of range [0.0, 100.0]"),
    ({"housing_median_age": -1.0}, "field 'housing_median_age' = -1.0 must be >= 0"),
    ({"population": 0.0}, "field 'population' = 0.0 must be > 0"),
    ({"total_rooms": "880"},
     "field 'total_rooms' must be a number, got the string '880' (strings are not coerced)"),
    ({"total_rooms": [1]}, "field 'total_rooms' must be a number, got list [1]"),
    ({"total_rooms": float("nan")}, "field 'total_rooms' = nan is not finite"),
    ({"total_rooms": 10**400}, f"field 'total_rooms' = 1{'0' * 56}... is too large for a double"),
    ({"ocean_proximity": None}, "required field 'ocean_proximity' is null"),
    ({"ocean_proximity": 3}, "field 'ocean_proximity' must be a string, got int 3"),
    ({"ocean_proximity": "MARS"},
     "field 'ocean_proximity' = 'MARS' is not one of ['<1H OCEAN', 'INLAND', 'ISLAND', 'NEAR BAY', 'NEAR OCEAN']"),
    ({"record_id": 7}, "field 'record_id' must be a non-empty string of at most 256 characters, got int 7"),
    ({"event_time": 1.5}, "field 'event_time' must be an integer of milliseconds since the epoch, got float 1.5"),
    ({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6},
     "unknown field 'a' (unknown fields: ['a', 'b', 'c', 'd', 'e'])"),
], ids=lambda v: str(v)[:30] if isinstance(v, dict) else None)
def test_the_message_of_each_rejection(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_record({**EXAMPLE_RECORD, **change})
    assert caught.value.message == message


def test_a_missing_category_is_named() -> None:
    record = dict(EXAMPLE_RECORD)
    del record["ocean_proximity"]
    with pytest.raises(ValidationError) as caught:
        validate_record(record)
    assert caught.value.message == "required field 'ocean_proximity' is missing"
