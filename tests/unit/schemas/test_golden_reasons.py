"""The decoder and validator against the hand-written golden table (tests/golden/bad_records.py), and the
producer's bad-record corpus for equality with it (the corpus feeds --bad-fraction and the scorer tests)."""

from __future__ import annotations

import pytest

from producer.bad_records import BAD_RECORDS
from schemas.codecs import RecordDecoder
from schemas.errors import DecodeError, ValidationError
from schemas.validation import validate_record
from tests.golden.bad_records import GOLDEN, GOOD, SINGLE_OBJECT


def rejection(value: bytes) -> tuple[str, str] | None:
    """(reason, stage) the scorer's decode then validate give ``value``; None when it is valid."""
    try:
        fields, _, _ = RecordDecoder().decode(value)
    except DecodeError as exc:
        return exc.reason, "decode"
    try:
        validate_record(fields)
    except ValidationError as exc:
        return exc.reason, "validate"
    return None


def test_the_good_records_the_table_starts_from_are_valid() -> None:
    assert rejection(GOOD) is None
    assert rejection(SINGLE_OBJECT) is None


@pytest.mark.parametrize("kind", sorted(GOLDEN))
def test_each_golden_kind_is_rejected_with_its_reason_and_stage(kind: str) -> None:
    golden = GOLDEN[kind]
    assert rejection(golden.value) == (golden.reason, golden.stage)


def test_the_producer_corpus_is_the_golden_table() -> None:
    assert sorted(BAD_RECORDS) == sorted(GOLDEN)
    differ = [kind for kind, golden in GOLDEN.items()
              if (BAD_RECORDS[kind].value, BAD_RECORDS[kind].reason, BAD_RECORDS[kind].stage) != tuple(golden)]
    assert not differ, differ
