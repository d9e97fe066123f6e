"""A named corpus of bad housing-record messages, each with the reason the scorer must reject it for.

Used by the unit tests (every kind must land on the DLQ with its reason and stage) and by the
producer's ``--bad-fraction`` option. Pure: builds bytes with schemas.codecs, needs no broker.
Every bad value is one defect away from a good record (the CSV's first row), so a wrong reason
points at one check.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from schemas.codecs import HOUSING_RECORD, SINGLE_OBJECT_MAGIC, WireFormat, encode_record
from schemas.examples import EXAMPLE_RECORD

logger = logging.getLogger(__name__)


class BadRecord(NamedTuple):
    """One bad message value and how it must be rejected."""

    value: bytes
    reason: str
    """Expected code from schemas.errors.REASONS."""
    stage: str
    """Expected stage: decode or validate."""


# The first rows of data/housing.csv (median_house_value dropped), one per category plus a null
# total_bedrooms, so good records exercise every category and the imputer. The first is the canonical
# schemas.examples.EXAMPLE_RECORD.
_GOOD_ROWS: Final[tuple[dict[str, Any], ...]] = (
    dict(EXAMPLE_RECORD),
    {
        "longitude": -121.97,
        "latitude": 37.64,
        "housing_median_age": 32.0,
        "total_rooms": 1283.0,
        "total_bedrooms": 194.0,
        "population": 485.0,
        "households": 171.0,
        "median_income": 6.0574,
        "ocean_proximity": "<1H OCEAN",
    },
    {
        "longitude": -121.92,
        "latitude": 37.64,
        "housing_median_age": 46.0,
        "total_rooms": 1280.0,
        "total_bedrooms": 209.0,
        "population": 512.0,
        "households": 208.0,
        "median_income": 5.1406,
        "ocean_proximity": "INLAND",
    },
    {
        "longitude": -122.16,
        "latitude": 37.77,
        "housing_median_age": 47.0,
        "total_rooms": 1256.0,
        "total_bedrooms": None,
        "population": 570.0,
        "households": 218.0,
        "median_income": 4.375,
        "ocean_proximity": "NEAR BAY",
    },
    {
        "longitude": -124.17,
        "latitude": 41.8,
        "housing_median_age": 16.0,
        "total_rooms": 2739.0,
        "total_bedrooms": 480.0,
        "population": 1259.0,
        "households": 436.0,
        "median_income": 3.7557,
        "ocean_proximity": "NEAR OCEAN",
    },
    {
        "longitude": -118.32,
        "latitude": 33.35,
        "housing_median_age": 27.0,
        "total_rooms": 1675.0,
        "total_bedrooms": 521.0,
        "population": 744.0,
        "households": 331.0,
        "median_income": 2.1579,
        "ocean_proximity": "ISLAND",
    },
)

BASE_RECORD: Final[dict[str, Any]] = dict(_GOOD_ROWS[0])
"""The CSV's first row: every bad record is this with one defect."""


def good_record(i: int = 0) -> dict[str, Any]:
    """A valid record (a fresh dict), cycling through real CSV rows, with ``record_id`` ``good-<i>``."""
    record = dict(_GOOD_ROWS[i % len(_GOOD_ROWS)])
    record["record_id"] = f"good-{i}"
    return record


def _json(record: Any) -> bytes:
    # allow_nan: the NaN/Infinity kinds need the literals on the wire
    return json.dumps(record, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _with(**changes: Any) -> bytes:
    return _json({**BASE_RECORD, **changes})


def _without(name: str) -> bytes:
    return _json({k: v for k, v in BASE_RECORD.items() if k != name})


def _avro_body(**changes: Any) -> bytes:
    return HOUSING_RECORD.write({**BASE_RECORD, **changes})


def _single_object(**changes: Any) -> bytes:
    return encode_record({**BASE_RECORD, **changes}, WireFormat.AVRO_SINGLE_OBJECT)


def _padded(good_json: bytes, size: int) -> bytes:
    """The good record with a padding field that makes it exactly ``size`` bytes."""
    head, tail = good_json[:-1] + b',"padding":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _build() -> dict[str, BadRecord]:
    good_json = _json(BASE_RECORD)
    good_avro = _single_object()
    d, v = "decode", "validate"
    kinds: dict[str, tuple[Callable[[], bytes], str, str]] = {
        # decode stage
        "empty_message": (lambda: b"", "empty_message", d),
        "too_large_just_over": (lambda: _padded(good_json, 1_000_001), "too_large", d),
        "too_large_1mib": (lambda: _padded(good_json, 1 << 20), "too_large", d),
        "not_utf8": (lambda: good_json.replace(b"NEAR BAY", b"NEAR \xff\xfe BAY"), "not_utf8", d),
        "latin1_text": (lambda: good_json.replace(b"NEAR BAY", "NEAR BAŸ".encode("cp1252")), "not_utf8", d),
        "malformed_json_truncated": (lambda: good_json[: len(good_json) // 2], "malformed_json", d),
        "malformed_json_trailing_comma": (lambda: good_json[:-1] + b",}", "malformed_json", d),
        "malformed_json_single_quotes": (lambda: good_json.replace(b'"', b"'"), "malformed_json", d),
        "json_deeply_nested": (lambda: b"[" * 100_000 + b"]" * 100_000, "malformed_json", d),
        "json_integer_too_long": (lambda: good_json.replace(b"880.0", b"9" * 5000), "malformed_json", d),
        "json_array": (lambda: b"[" + good_json + b"]", "not_an_object", d),
        "json_string": (lambda: b'"-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,NEAR BAY"', "not_an_object", d),
        "json_number": (lambda: b"42", "not_an_object", d),
        "json_null": (lambda: b"null", "not_an_object", d),
        "csv_line": (lambda: b"-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,NEAR BAY", "malformed_json", d),
        "bad_magic_short_confluent": (lambda: b"\x00\x01", "bad_magic", d),
        "bad_magic_single_object_version": (lambda: b"\xc3\x02" + good_avro[2:], "bad_magic", d),
        "bad_magic_short_single_object": (lambda: good_avro[:6], "bad_magic", d),
        "confluent_unknown_schema_id": (
            lambda: b"\x00" + (987_654).to_bytes(4, "big") + _avro_body(),
            "unknown_schema_id",
            d,
        ),
        "single_object_unknown_fingerprint": (
            lambda: SINGLE_OBJECT_MAGIC + bytes.fromhex("0123456789abcdef") + _avro_body(),
            "unknown_fingerprint",
            d,
        ),
        "single_object_truncated": (lambda: good_avro[:-5], "truncated_avro", d),
        "single_object_header_only": (lambda: good_avro[:10], "truncated_avro", d),
        "single_object_trailing_garbage": (lambda: good_avro + b"garbage", "truncated_avro", d),
        # validate stage
        "missing_field": (lambda: _without("median_income"), "missing_field", v),
        "missing_category": (lambda: _without("ocean_proximity"), "missing_field", v),
        "empty_object": (lambda: b"{}", "missing_field", v),
        "extra_field": (lambda: _with(color="blue"), "unknown_field", v),
        "target_included": (lambda: _with(median_house_value=452600.0), "unknown_field", v),
        "null_required_field": (lambda: _with(latitude=None), "null_value", v),
        "null_category": (lambda: _with(ocean_proximity=None), "null_value", v),
        "string_for_number": (lambda: _with(total_rooms="lots"), "wrong_type", v),
        "number_as_string": (lambda: _with(total_rooms="880.0"), "wrong_type", v),
        "bool_for_number": (lambda: _with(households=True), "wrong_type", v),
        "object_for_number": (lambda: _with(population={"value": 322.0}), "wrong_type", v),
        "list_for_number": (lambda: _with(median_income=[8.3252]), "wrong_type", v),
        "number_for_category": (lambda: _with(ocean_proximity=1), "wrong_type", v),
        "nan": (lambda: _with(longitude=math.nan), "not_finite", v),
        "infinity": (lambda: _with(total_rooms=math.inf), "not_finite", v),
        "negative_infinity": (lambda: _with(median_income=-math.inf), "not_finite", v),
        "nan_bedrooms": (lambda: _with(total_bedrooms=math.nan), "not_finite", v),
        "overflow_literal": (lambda: good_json.replace(b"880.0", b"1e400"), "not_finite", v),
        "negative_total_rooms": (lambda: _with(total_rooms=-880.0), "negative_count", v),
        "negative_bedrooms": (lambda: _with(total_bedrooms=-1.0), "negative_count", v),
        "negative_age": (lambda: _with(housing_median_age=-41.0), "negative_count", v),
        "negative_income": (lambda: _with(median_income=-8.3252), "negative_count", v),
        "zero_households": (lambda: _with(households=0.0), "negative_count", v),
        "zero_population": (lambda: _with(population=0), "negative_count", v),
        "latitude_out_of_range": (lambda: _with(latitude=55.0), "out_of_range", v),
        "longitude_out_of_range": (lambda: _with(longitude=0.0), "out_of_range", v),
        "lat_lon_swapped": (lambda: _with(longitude=37.88, latitude=-122.23), "out_of_range", v),
        "age_implausible": (lambda: _with(housing_median_age=500.0), "out_of_range", v),
        "income_in_dollars": (lambda: _with(median_income=83252.0), "out_of_range", v),
        "unknown_category": (lambda: _with(ocean_proximity="FAR AWAY"), "unknown_category", v),
        "lowercase_category": (lambda: _with(ocean_proximity="near bay"), "unknown_category", v),
        "padded_category": (lambda: _with(ocean_proximity=" NEAR BAY"), "unknown_category", v),
        "numeric_record_id": (lambda: _with(record_id=12345), "bad_record_id", v),
        "empty_record_id": (lambda: _with(record_id=""), "bad_record_id", v),
        "string_event_time": (lambda: _with(event_time="2024-01-01T00:00:00Z"), "bad_event_time", v),
        "float_event_time": (lambda: _with(event_time=1.7e12), "bad_event_time", v),
        "negative_event_time": (lambda: _with(event_time=-1), "bad_event_time", v),
        "avro_nan_latitude": (lambda: _single_object(latitude=math.nan), "not_finite", v),
        "avro_out_of_range": (lambda: _single_object(latitude=10.0), "out_of_range", v),
        "avro_unknown_category": (lambda: _single_object(ocean_proximity="MOON"), "unknown_category", v),
    }
    return {name: BadRecord(build(), reason, stage) for name, (build, reason, stage) in kinds.items()}


BAD_RECORDS: Final[dict[str, BadRecord]] = _build()
"""Every named kind of bad message, with its expected reason and stage."""

BAD_KINDS: Final[tuple[str, ...]] = tuple(BAD_RECORDS)

LARGE_KINDS: Final[tuple[str, ...]] = tuple(k for k, bad in BAD_RECORDS.items() if len(bad.value) >= 1_000_000)
"""Kinds of 1 MB or more: librdkafka's default message.max.bytes (1,000,000) refuses them, and the
1 MiB one is over the broker's default max.message.bytes (1,048,588 with overhead) too. A producer
sends them only after raising its limits, or skips them."""
