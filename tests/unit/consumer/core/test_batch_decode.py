"""The batch decode + validate stage gives exactly what the per-record path gives: the same valid records and
feature columns, the same dead letters (reason, stage and message text) in the same order.

The reference is written here as the scorer did it before: ``RecordDecoder.decode`` then ``validate_record``
per record, then ``to_columns``. Batches mix clean JSON (the column-wise route), every golden bad kind, Avro,
values the column screen cannot prove valid but are (they take the exact route and must still be scored), and
values orjson and ``json`` read differently.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.core.batch_decode import decode_validate
from consumer.core.features import FEATURE_COLUMNS, to_columns
from consumer.core.scoring import Incoming
from schemas.batch_validation import screen_records
from schemas.codecs import RecordDecoder
from schemas.errors import SchemaError
from schemas.validation import validate_record
from tests.golden.bad_records import GOLDEN, GOOD, SINGLE_OBJECT

GOOD_RECORD: dict[str, Any] = json.loads(GOOD)


def _dead(msg: Incoming, reason: str, stage: str, message: str) -> tuple[int, str, str, str]:
    # fastavro's EOFError text names a BytesIO's address, different on each read
    return msg.offset, reason, stage, re.sub(r"0x[0-9a-f]+", "0x...", message)


def reference(batch: list[Incoming], decoder: RecordDecoder) -> tuple[list[Any], list[Any], Any]:
    valid, rejected = [], []
    for index, msg in enumerate(batch):
        try:
            fields, fmt, _ = decoder.decode(msg.value)
            record = validate_record(fields)
        except SchemaError as exc:
            rejected.append((index, _dead(msg, exc.reason, exc.stage, exc.message)))
            continue
        valid.append((index, msg, record, fmt))
    return valid, rejected, to_columns([r for _, _, r, _ in valid]) if valid else None


def assert_same_as_reference(values: Sequence[bytes | None]) -> None:
    batch = [Incoming(b"k", value, "records", 0, n) for n, value in enumerate(values)]
    decoder = RecordDecoder(None)
    want_valid, want_rejected, want_columns = reference(batch, decoder)
    got = decode_validate(batch, decoder, _dead)
    assert got.rejected == want_rejected
    assert [(i, m, f) for i, m, _, f in got.valid] == [(i, m, f) for i, m, _, f in want_valid]
    for (_, _, got_record, _), (_, _, want_record, _) in zip(got.valid, want_valid, strict=True):
        assert got_record["record_id"] == want_record["record_id"]
        assert got_record["event_time"] == want_record["event_time"]
    if want_columns is None:
        assert got.columns is None
        return
    assert got.columns is not None
    assert list(got.columns) == list(FEATURE_COLUMNS)
    for name in FEATURE_COLUMNS:
        assert got.columns[name].dtype == want_columns[name].dtype, name
        np.testing.assert_array_equal(got.columns[name], want_columns[name], err_msg=name)


def record(**changes: Any) -> bytes:
    fields = {**GOOD_RECORD, **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not _DROP}).encode()


_DROP = object()

# Valid, but not provably so column-wise (or not read by orjson): the exact route must score them.
VALID_EDGES: list[bytes | None] = [
    record(event_time=2**63 - 1),  # float64 rounds it up to 2**63
    record(total_rooms=2**64),  # orjson reads it as a float, json as an int: the same double
    record(total_bedrooms=None), record(total_bedrooms=_DROP), record(record_id=None, event_time=None),
    record(record_id="x" * 256, event_time=0), record(housing_median_age=0, median_income=0.0),
    b'{"longitude":-122.23,"latitude":37.88,"longitude":-122.0,"housing_median_age":41,"total_rooms":880,'
    b'"total_bedrooms":129,"population":322,"households":126,"median_income":8.3,"ocean_proximity":"INLAND"}',
    record(record_id="\ud83d\ude00-emoji"), SINGLE_OBJECT, b" " + GOOD,
]
# Invalid in ways the column screen must catch (and leave to validate_record to name).
INVALID_EDGES: list[bytes | None] = [
    record(event_time=2**63), record(event_time=-1), record(event_time=True), record(event_time=1.5),
    record(event_time=2**64), record(record_id=""), record(record_id="x" * 257), record(record_id=5),
    record(total_rooms=0), record(total_rooms=True), record(total_rooms="880"), record(total_rooms=[1]),
    record(total_rooms=10**400), record(ocean_proximity=["INLAND"]), record(ocean_proximity={"a": 1}),
    record(ocean_proximity="inland"), record(ocean_proximity=None), record(ocean_proximity=_DROP),
    record(latitude=_DROP), record(latitude=None), record(population=-0.0 - 1e-300), record(extra=1),
    record(total_bedrooms=float("nan")), record(median_income=float("inf")), record(latitude=1e308 * 10),
    record(record_id="\ud800"), b"{", b"{}", b'{"a":1}x', None, b"", b"[1]",
]


def test_clean_json_takes_the_column_route_and_matches() -> None:
    values = [record(record_id=f"r{n}", event_time=1_700_000_000_000 + n, longitude=-122.0 - n / 1000)
              for n in range(50)]
    assert screen_records([json.loads(v) for v in values])[0].all()
    assert_same_as_reference(values)


@pytest.mark.parametrize("value", VALID_EDGES + INVALID_EDGES, ids=range(len(VALID_EDGES + INVALID_EDGES)))
def test_each_edge_alone_and_between_good_records(value: bytes | None) -> None:
    assert_same_as_reference([value])
    assert_same_as_reference([GOOD, value, record(record_id="after")])


def test_every_golden_kind_in_one_batch_with_good_records_and_edges() -> None:
    values: list[bytes | None] = [golden.value for golden in GOLDEN.values()] + VALID_EDGES + INVALID_EDGES
    values += [record(record_id=f"ok-{n}") for n in range(40)]
    random.Random(7).shuffle(values)
    assert_same_as_reference(values)


def test_screen_passes_no_row_that_validate_record_rejects() -> None:
    rows = [json.loads(v) for v in VALID_EDGES + INVALID_EDGES if v is not None and v[:1] == b"{" and _parses(v)]
    passed, _ = screen_records(rows)
    for row, ok in zip(rows, passed.tolist(), strict=True):
        if ok:
            validate_record(row)  # raises if the screen let a bad row through


def test_an_all_bad_batch_has_no_columns() -> None:
    assert_same_as_reference([golden.value for golden in GOLDEN.values() if golden.stage == "validate"])


def _parses(value: bytes) -> bool:
    try:
        return isinstance(json.loads(value), dict)
    except ValueError:
        return False


_ANY = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                 st.sampled_from(["INLAND", "NEAR BAY", "<1H OCEAN", "x" * 300]), st.lists(st.integers(), max_size=1))
_FIELD = st.sampled_from(list(GOOD_RECORD) + ["record_id", "event_time", "zzz"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_FIELD, _ANY, max_size=3), min_size=1, max_size=6))
def test_random_defects_match_the_reference(changes: list[dict[str, Any]]) -> None:
    values = [json.dumps({**GOOD_RECORD, **change}).encode() for change in changes]
    assert_same_as_reference(values + [GOOD])
