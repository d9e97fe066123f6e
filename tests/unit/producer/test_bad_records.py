"""producer.bad_records: the corpus itself — size, coverage, and that each kind fails as labelled."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from config.settings import PROJECT_ROOT
from producer.bad_records import BAD_KINDS, BAD_RECORDS, BASE_RECORD, LARGE_KINDS, BadRecord, good_record
from schemas.codecs import RecordDecoder
from schemas.errors import REASONS, SchemaError
from schemas.validation import OCEAN_PROXIMITY_CATEGORIES, validate_record

ROOT = PROJECT_ROOT


def test_corpus_is_large_and_well_formed() -> None:
    assert len(BAD_RECORDS) >= 32
    assert BAD_KINDS == tuple(BAD_RECORDS)
    for kind, bad in BAD_RECORDS.items():
        assert isinstance(bad, BadRecord) and isinstance(bad.value, bytes), kind
        assert bad.reason in REASONS, kind
        assert bad.stage in ("decode", "validate"), kind


def test_corpus_covers_every_decode_and_validate_reason() -> None:
    covered = {bad.reason for bad in BAD_RECORDS.values()}
    # Not bad input: the model's failures (predict stage) and a prediction too large to produce (produce stage).
    expected = set(REASONS) - {"predict_failed", "non_finite_prediction", "output_too_large"}
    assert covered == expected


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_kind_fails_exactly_as_labelled(kind: str) -> None:
    bad = BAD_RECORDS[kind]
    with pytest.raises(SchemaError) as info:
        fields, _, _ = RecordDecoder().decode(bad.value)
        validate_record(fields)
    assert (info.value.reason, info.value.stage) == (bad.reason, bad.stage), info.value.message


def test_required_kinds_are_present() -> None:
    for kind in (
        "empty_message",
        "too_large_1mib",
        "not_utf8",
        "malformed_json_truncated",
        "json_array",
        "json_string",
        "json_null",
        "missing_field",
        "extra_field",
        "null_required_field",
        "string_for_number",
        "number_as_string",
        "bool_for_number",
        "object_for_number",
        "list_for_number",
        "nan",
        "infinity",
        "negative_infinity",
        "negative_total_rooms",
        "zero_households",
        "latitude_out_of_range",
        "longitude_out_of_range",
        "unknown_category",
        "lowercase_category",
        "single_object_truncated",
        "single_object_unknown_fingerprint",
        "confluent_unknown_schema_id",
        "bad_magic_short_confluent",
        "single_object_trailing_garbage",
    ):
        assert kind in BAD_RECORDS, kind
    assert BAD_RECORDS["bad_magic_short_confluent"].value == b"\x00\x01"
    assert BAD_RECORDS["empty_message"].value == b""


def test_large_kinds() -> None:
    assert set(LARGE_KINDS) == {"too_large_just_over", "too_large_1mib"}
    assert len(BAD_RECORDS["too_large_just_over"].value) == 1_000_001
    assert len(BAD_RECORDS["too_large_1mib"].value) == 1 << 20
    # apart from its size the 1 MiB message is a good record
    fields = json.loads(BAD_RECORDS["too_large_1mib"].value)
    fields.pop("padding")
    validate_record(fields)


def test_one_defect_from_the_base_record() -> None:
    fields = json.loads(BAD_RECORDS["latitude_out_of_range"].value)
    assert {k for k in fields if fields[k] != BASE_RECORD.get(k)} == {"latitude"}
    validate_record(BASE_RECORD)


def test_good_records_are_valid_fresh_and_varied() -> None:
    records = [good_record(i) for i in range(24)]
    for i, record in enumerate(records):
        clean = validate_record(record)
        assert clean["record_id"] == f"good-{i}"
    assert {r["ocean_proximity"] for r in records} == set(OCEAN_PROXIMITY_CATEGORIES)
    assert any(r["total_bedrooms"] is None for r in records)
    records[0]["latitude"] = 0.0
    assert good_record(0)["latitude"] != 0.0
    assert good_record() == good_record(0)


def test_importable_without_kafka_client() -> None:
    code = "import sys, producer.bad_records; sys.exit('confluent_kafka' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0
