"""Golden table: every kind of bad record, its raw bytes, and the dead-letter reason and stage it must get.

Written by hand from the rules in the README's "Validation" table, not from schemas.codecs, schemas.validation
or producer.bad_records: the bytes are literals (JSON as text, Avro assembled here field by field, following the
Avro specification's binary encoding) and each reason is what the rules say. tests/unit/schemas/
test_golden_reasons.py checks the decoder and validator against it and the producer's corpus for equality with
it; tests/integration/test_bad_input.py checks the dead letters on the real broker against it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple


class Golden(NamedTuple):
    value: bytes
    reason: str
    """The dlq.reason header."""
    stage: str
    """The dlq.stage header."""


GOOD = (b'{"longitude":-122.23,"latitude":37.88,"housing_median_age":41.0,"total_rooms":880.0,'
        b'"total_bedrooms":129.0,"population":322.0,"households":126.0,"median_income":8.3252,'
        b'"ocean_proximity":"NEAR BAY"}')
"""The first row of data/housing.csv as compact JSON: valid. Each bad kind is one defect away from it."""


def _replace(old: bytes, new: bytes) -> bytes:
    assert GOOD.count(old) == 1, old
    return GOOD.replace(old, new)


def _add(field: bytes) -> bytes:
    return GOOD[:-1] + b"," + field + b"}"


def _padded(size: int) -> bytes:
    head, tail = GOOD[:-1] + b',"padding":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


HOUSING_RECORD_FINGERPRINT = bytes.fromhex("52f43b74f7b3eb80")
"""CRC-64-AVRO of housing_record.avsc (pinned in tests/unit/schemas/test_fingerprints.py)."""


def _avro_body(latitude: float = 37.88, ocean_proximity: bytes = b"NEAR BAY") -> bytes:
    """The good record in Avro binary: doubles little-endian, total_bedrooms a union (branch 1: double), the
    category a string (zig-zag length), record_id and event_time unions on their null branch."""

    def double(x: float) -> bytes:
        return struct.pack("<d", x)

    return (double(-122.23) + double(latitude) + double(41.0) + double(880.0) + b"\x02" + double(129.0)
            + double(322.0) + double(126.0) + double(8.3252) + bytes([len(ocean_proximity) * 2]) + ocean_proximity
            + b"\x00" + b"\x00")


SINGLE_OBJECT = b"\xc3\x01" + HOUSING_RECORD_FINGERPRINT + _avro_body()

D, V = "decode", "validate"

GOLDEN: dict[str, Golden] = {
    # Framing and size (decode).
    "empty_message": Golden(b"", "empty_message", D),
    "too_large_just_over": Golden(_padded(1_000_001), "too_large", D),
    "too_large_1mib": Golden(_padded(1 << 20), "too_large", D),
    # JSON must be UTF-8 and an object (decode).
    "not_utf8": Golden(_replace(b"NEAR BAY", b"NEAR \xff\xfe BAY"), "not_utf8", D),
    "latin1_text": Golden(_replace(b"NEAR BAY", b"NEAR BA\x9f"), "not_utf8", D),
    "malformed_json_truncated": Golden(GOOD[: len(GOOD) // 2], "malformed_json", D),
    "malformed_json_trailing_comma": Golden(GOOD[:-1] + b",}", "malformed_json", D),
    "malformed_json_single_quotes": Golden(GOOD.replace(b'"', b"'"), "malformed_json", D),
    "json_deeply_nested": Golden(b"[" * 100_000 + b"]" * 100_000, "malformed_json", D),
    "json_integer_too_long": Golden(_replace(b"880.0", b"9" * 5000), "malformed_json", D),
    "json_array": Golden(b"[" + GOOD + b"]", "not_an_object", D),
    "json_string": Golden(b'"-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,NEAR BAY"', "not_an_object", D),
    "json_number": Golden(b"42", "not_an_object", D),
    "json_null": Golden(b"null", "not_an_object", D),
    "csv_line": Golden(b"-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,NEAR BAY", "malformed_json", D),
    # Avro framing, schema id / fingerprint, payload (decode).
    "bad_magic_short_confluent": Golden(b"\x00\x01", "bad_magic", D),
    "bad_magic_single_object_version": Golden(b"\xc3\x02" + SINGLE_OBJECT[2:], "bad_magic", D),
    "bad_magic_short_single_object": Golden(SINGLE_OBJECT[:6], "bad_magic", D),
    "confluent_unknown_schema_id": Golden(b"\x00" + (987_654).to_bytes(4, "big") + _avro_body(),
                                          "unknown_schema_id", D),
    "single_object_unknown_fingerprint": Golden(b"\xc3\x01" + bytes.fromhex("0123456789abcdef") + _avro_body(),
                                                "unknown_fingerprint", D),
    "single_object_truncated": Golden(SINGLE_OBJECT[:-5], "truncated_avro", D),
    "single_object_header_only": Golden(SINGLE_OBJECT[:10], "truncated_avro", D),
    "single_object_trailing_garbage": Golden(SINGLE_OBJECT + b"garbage", "truncated_avro", D),
    # The 9 features are required, nothing else but record_id / event_time allowed (validate).
    "missing_field": Golden(_replace(b'"median_income":8.3252,', b""), "missing_field", V),
    "missing_category": Golden(_replace(b',"ocean_proximity":"NEAR BAY"', b""), "missing_field", V),
    "empty_object": Golden(b"{}", "missing_field", V),
    "extra_field": Golden(_add(b'"color":"blue"'), "unknown_field", V),
    "target_included": Golden(_add(b'"median_house_value":452600.0'), "unknown_field", V),
    "null_required_field": Golden(_replace(b'"latitude":37.88', b'"latitude":null'), "null_value", V),
    "null_category": Golden(_replace(b'"NEAR BAY"', b"null"), "null_value", V),
    # Numbers are JSON numbers, the category a string (validate).
    "string_for_number": Golden(_replace(b"880.0", b'"lots"'), "wrong_type", V),
    "number_as_string": Golden(_replace(b"880.0", b'"880.0"'), "wrong_type", V),
    "bool_for_number": Golden(_replace(b'"households":126.0', b'"households":true'), "wrong_type", V),
    "object_for_number": Golden(_replace(b'"population":322.0', b'"population":{"value":322.0}'), "wrong_type", V),
    "list_for_number": Golden(_replace(b"8.3252", b"[8.3252]"), "wrong_type", V),
    "number_for_category": Golden(_replace(b'"NEAR BAY"', b"1"), "wrong_type", V),
    # No NaN / Infinity (validate).
    "nan": Golden(_replace(b"-122.23", b"NaN"), "not_finite", V),
    "infinity": Golden(_replace(b"880.0", b"Infinity"), "not_finite", V),
    "negative_infinity": Golden(_replace(b"8.3252", b"-Infinity"), "not_finite", V),
    "nan_bedrooms": Golden(_replace(b"129.0", b"NaN"), "not_finite", V),
    "overflow_literal": Golden(_replace(b"880.0", b"1e400"), "not_finite", V),
    # Counts and income >= 0; total_rooms, population, households > 0 (validate).
    "negative_total_rooms": Golden(_replace(b"880.0", b"-880.0"), "negative_count", V),
    "negative_bedrooms": Golden(_replace(b"129.0", b"-1.0"), "negative_count", V),
    "negative_age": Golden(_replace(b"41.0", b"-41.0"), "negative_count", V),
    "negative_income": Golden(_replace(b"8.3252", b"-8.3252"), "negative_count", V),
    "zero_households": Golden(_replace(b"126.0", b"0.0"), "negative_count", V),
    "zero_population": Golden(_replace(b"322.0", b"0"), "negative_count", V),
    # Latitude 32.0..42.5, longitude -124.6..-114.0, age <= 200, income <= 100 (validate).
    "latitude_out_of_range": Golden(_replace(b"37.88", b"55.0"), "out_of_range", V),
    "longitude_out_of_range": Golden(_replace(b"-122.23", b"0.0"), "out_of_range", V),
    "lat_lon_swapped": Golden(_replace(b'"longitude":-122.23,"latitude":37.88',
                                       b'"longitude":37.88,"latitude":-122.23'), "out_of_range", V),
    "age_implausible": Golden(_replace(b"41.0", b"500.0"), "out_of_range", V),
    "income_in_dollars": Golden(_replace(b"8.3252", b"83252.0"), "out_of_range", V),
    # One of five categories, exactly (validate).
    "unknown_category": Golden(_replace(b"NEAR BAY", b"FAR AWAY"), "unknown_category", V),
    "lowercase_category": Golden(_replace(b"NEAR BAY", b"near bay"), "unknown_category", V),
    "padded_category": Golden(_replace(b'"NEAR BAY"', b'" NEAR BAY"'), "unknown_category", V),
    # Optional fields of the wrong shape (validate).
    "numeric_record_id": Golden(_add(b'"record_id":12345'), "bad_record_id", V),
    "empty_record_id": Golden(_add(b'"record_id":""'), "bad_record_id", V),
    "string_event_time": Golden(_add(b'"event_time":"2024-01-01T00:00:00Z"'), "bad_event_time", V),
    "float_event_time": Golden(_add(b'"event_time":1700000000000.0'), "bad_event_time", V),
    "negative_event_time": Golden(_add(b'"event_time":-1'), "bad_event_time", V),
    # The same rules for Avro records (validate).
    "avro_nan_latitude": Golden(b"\xc3\x01" + HOUSING_RECORD_FINGERPRINT + _avro_body(latitude=float("nan")),
                                "not_finite", V),
    "avro_out_of_range": Golden(b"\xc3\x01" + HOUSING_RECORD_FINGERPRINT + _avro_body(latitude=10.0),
                                "out_of_range", V),
    "avro_unknown_category": Golden(b"\xc3\x01" + HOUSING_RECORD_FINGERPRINT + _avro_body(ocean_proximity=b"MOON"),
                                    "unknown_category", V),
}
