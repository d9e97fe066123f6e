"""schemas.validation: the HousingRecord contract beyond types, reason by reason and at the bounds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from schemas.errors import REASONS, ValidationError
from schemas.examples import EXAMPLE_RECORD
from schemas.validation import ALLOWED_FIELDS, OCEAN_PROXIMITY_CATEGORIES, validate_record

GOOD: dict[str, Any] = dict(EXAMPLE_RECORD)


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def _without(*names: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k not in names}


def _reject(fields: Mapping[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_record(fields)
    assert info.value.stage == "validate"
    assert info.value.reason in REASONS
    return info.value


def test_good_record_comes_back_clean_and_typed() -> None:
    clean = validate_record(_with(total_rooms=880, population=322, record_id="r-1", event_time=1_700_000_000_000))
    assert clean == {
        **GOOD,
        "total_rooms": 880.0,
        "population": 322.0,
        "record_id": "r-1",
        "event_time": 1_700_000_000_000,
    }
    assert type(clean["total_rooms"]) is float and type(clean["population"]) is float
    assert type(clean["event_time"]) is int


def test_optional_fields_default_to_none() -> None:
    clean = validate_record(_without("total_bedrooms"))
    assert clean["total_bedrooms"] is None
    assert clean["record_id"] is None and clean["event_time"] is None
    assert validate_record(_with(total_bedrooms=None, record_id=None, event_time=None))["total_bedrooms"] is None


def test_input_is_not_mutated_and_any_mapping_works() -> None:
    fields = MappingProxyType(_with(total_rooms=880))
    validate_record(fields)
    assert fields["total_rooms"] == 880 and type(fields["total_rooms"]) is int


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        (_without("median_income"), "missing_field", "median_income"),
        (_without("ocean_proximity"), "missing_field", "ocean_proximity"),
        ({}, "missing_field", "longitude"),
        (_with(colour="blue"), "unknown_field", "colour"),
        (_with(median_house_value=1.0), "unknown_field", "median_house_value"),
        (_with(latitude=None), "null_value", "latitude"),
        (_with(ocean_proximity=None), "null_value", "ocean_proximity"),
        (_with(total_rooms="880.0"), "wrong_type", "total_rooms"),
        (_with(total_rooms="lots"), "wrong_type", "total_rooms"),
        (_with(households=True), "wrong_type", "households"),
        (_with(households=False), "wrong_type", "households"),
        (_with(population={"v": 1}), "wrong_type", "population"),
        (_with(median_income=[8.3]), "wrong_type", "median_income"),
        (_with(total_bedrooms="129"), "wrong_type", "total_bedrooms"),
        (_with(ocean_proximity=1), "wrong_type", "ocean_proximity"),
        (_with(ocean_proximity=["NEAR BAY"]), "wrong_type", "ocean_proximity"),
        (_with(longitude=math.nan), "not_finite", "longitude"),
        (_with(total_rooms=math.inf), "not_finite", "total_rooms"),
        (_with(median_income=-math.inf), "not_finite", "median_income"),
        (_with(total_bedrooms=math.nan), "not_finite", "total_bedrooms"),
        (_with(population=10**400), "not_finite", "population"),
        (_with(total_rooms=-1.0), "negative_count", "total_rooms"),
        (_with(total_bedrooms=-1.0), "negative_count", "total_bedrooms"),
        (_with(housing_median_age=-0.5), "negative_count", "housing_median_age"),
        (_with(median_income=-0.1), "negative_count", "median_income"),
        (_with(households=0.0), "negative_count", "households"),
        (_with(population=0), "negative_count", "population"),
        (_with(total_rooms=0.0), "negative_count", "total_rooms"),
        (_with(latitude=55.0), "out_of_range", "latitude"),
        (_with(latitude=31.99), "out_of_range", "latitude"),
        (_with(longitude=0.0), "out_of_range", "longitude"),
        (_with(longitude=-124.61), "out_of_range", "longitude"),
        (_with(housing_median_age=200.5), "out_of_range", "housing_median_age"),
        (_with(median_income=100.01), "out_of_range", "median_income"),
        (_with(ocean_proximity="FAR AWAY"), "unknown_category", "ocean_proximity"),
        (_with(ocean_proximity="near bay"), "unknown_category", "ocean_proximity"),
        (_with(ocean_proximity="NEAR BAY "), "unknown_category", "ocean_proximity"),
        (_with(ocean_proximity=""), "unknown_category", "ocean_proximity"),
        (_with(record_id=12), "bad_record_id", "record_id"),
        (_with(record_id=""), "bad_record_id", "record_id"),
        (_with(record_id="x" * 257), "bad_record_id", "record_id"),
        (_with(event_time="2024-01-01"), "bad_event_time", "event_time"),
        (_with(event_time=1.7e12), "bad_event_time", "event_time"),
        (_with(event_time=True), "bad_event_time", "event_time"),
        (_with(event_time=-1), "bad_event_time", "event_time"),
        (_with(event_time=2**63), "bad_event_time", "event_time"),
    ],
)
def test_each_problem_has_its_reason_and_field(fields: dict[str, Any], reason: str, field: str) -> None:
    error = _reject(fields)
    assert (error.reason, error.field) == (reason, field)
    assert field in error.message


@pytest.mark.parametrize(
    "changes",
    [
        {"latitude": 32.0},
        {"latitude": 42.5},
        {"longitude": -124.6},
        {"longitude": -114.0},
        {"housing_median_age": 0.0},
        {"housing_median_age": 200.0},
        {"total_bedrooms": 0.0},
        {"median_income": 0.0},
        {"median_income": 100.0},
        {"households": 0.001},
        {"record_id": "x" * 256},
        {"event_time": 0},
        {"event_time": 2**63 - 1},
        {"total_rooms": np.float64(880.0)},  # a float subclass is a float
    ],
)
def test_bounds_are_inclusive_where_documented(changes: dict[str, Any]) -> None:
    validate_record(_with(**changes))


def test_zero_counts_say_must_be_positive() -> None:
    assert "must be > 0" in _reject(_with(households=0)).message
    assert "must be >= 0" in _reject(_with(total_bedrooms=-3.0)).message


def test_messages_name_the_value() -> None:
    assert "'lots'" in _reject(_with(total_rooms="lots")).message
    assert "55.0" in _reject(_with(latitude=55.0)).message
    assert "'FAR AWAY'" in _reject(_with(ocean_proximity="FAR AWAY")).message
    assert "string" in _reject(_with(total_rooms="880")).message


def test_long_values_are_cut_in_messages() -> None:
    error = _reject(_with(ocean_proximity="Z" * 10_000))
    assert error.reason == "unknown_category"
    assert len(error.message) < 400


def test_first_problem_wins_in_schema_order() -> None:
    # latitude comes before ocean_proximity in the schema
    assert _reject(_with(latitude=99.0, ocean_proximity="nope")).field == "latitude"
    # field problems come before unknown fields
    assert _reject({**_without("households"), "household": 126.0}).reason == "missing_field"
    # two unknown fields: reported alphabetically, so the same record always gives the same reason
    assert _reject(_with(zeta=1, alpha=2)).field == "alpha"
    # ocean_proximity checks come before the optional fields
    assert _reject(_with(ocean_proximity="x", record_id=5)).reason == "unknown_category"


def test_every_category_and_only_those() -> None:
    assert OCEAN_PROXIMITY_CATEGORIES == ("<1H OCEAN", "INLAND", "ISLAND", "NEAR BAY", "NEAR OCEAN")
    for category in OCEAN_PROXIMITY_CATEGORIES:
        assert validate_record(_with(ocean_proximity=category))["ocean_proximity"] == category
    assert ALLOWED_FIELDS == set(GOOD) | {"record_id", "event_time"}


# The documented ranges, written out here (not read from schemas.validation): an independent oracle.
DOCUMENTED_RANGES = {
    "longitude": (-124.6, -114.0),
    "latitude": (32.0, 42.5),
    "housing_median_age": (0.0, 200.0),
    "median_income": (0.0, 100.0),
}


@pytest.mark.parametrize(("field", "value"), [
    (field, value)
    for field, (low, high) in DOCUMENTED_RANGES.items()
    for value in (math.nextafter(low, -math.inf), math.nextafter(high, math.inf))
])
def test_a_value_just_outside_a_documented_bound_is_rejected(field: str, value: float) -> None:
    error = _reject(_with(**{field: value}))
    assert error.field == field
    assert error.reason in {"out_of_range", "negative_count"}


@pytest.mark.parametrize(("field", "value"), [
    (field, value)
    for field, (low, high) in DOCUMENTED_RANGES.items()
    for value in (math.nextafter(low, math.inf), math.nextafter(high, -math.inf))
])
def test_a_value_just_inside_a_documented_bound_is_accepted(field: str, value: float) -> None:
    validate_record(_with(**{field: value}))
