"""screen_records against validate_record, row by row: on rows away from float64's rounding near 2**63 the screen
passes exactly the rows validate_record accepts (every range bound met exactly and missed by one float step,
ints, bools, text, None, NaN, infinities, mixed-type columns, unknown fields, the optional fields' shapes), and
a passed row's columns hold validate_record's values. A screen that passes too much lets a bad record be
scored; one that passes too little sends clean records down the slow per-record route."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from producer.bad_records import good_record
from schemas.batch_validation import screen_records
from schemas.errors import ValidationError
from schemas.validation import NUMERIC_RULES, validate_record


def _accepts(fields: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return validate_record(fields)
    except ValidationError:
        return None


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [good_record(0), good_record(1), {**good_record(2), "total_bedrooms": None}]
    without = good_record(3)
    del without["total_bedrooms"], without["record_id"]
    rows.append(without)
    for name, _nullable, minimum, _exclusive, maximum in NUMERIC_RULES:
        values: list[Any] = [True, "1", None, math.nan, math.inf, -math.inf, 10**400, [1.0]]
        if minimum is not None:
            values += [minimum, math.nextafter(minimum, math.inf), math.nextafter(minimum, -math.inf)]
            if float(minimum).is_integer():
                values.append(int(minimum))
        if maximum is not None:
            values += [maximum, math.nextafter(maximum, math.inf), math.nextafter(maximum, -math.inf)]
        values.append(7)
        rows += [{**good_record(len(rows)), name: value} for value in values]
    rows += [{**good_record(90), "ocean_proximity": value} for value in ("INLAND", "inland", None, 3, "")]
    rows += [{**good_record(91), "record_id": value} for value in ("", "r", "x" * 256, "x" * 257, None, 5)]
    rows += [{**good_record(92), "event_time": value} for value in (-1, 0, 2**62, None, "1", 1.5, True, 2**80,
                                                                          10**400)]
    rows.append({**good_record(93), "rooms_per_household": 5.0})
    return rows


def _check(rows: list[dict[str, Any]]) -> None:
    expected = [_accepts(dict(row)) for row in rows]
    passed, columns = screen_records(rows)
    assert passed.dtype == np.bool_ and passed.shape == (len(rows),)
    mismatched = [(i, rows[i]) for i in range(len(rows)) if bool(passed[i]) != (expected[i] is not None)]
    assert not mismatched
    for i, clean in enumerate(expected):
        if clean is None:
            continue
        for name, *_ in NUMERIC_RULES:
            value = clean[name]
            assert (math.isnan(columns[name][i]) if value is None else columns[name][i] == value), (i, name)
        assert columns["ocean_proximity"][i] == clean["ocean_proximity"]


def test_the_screen_passes_exactly_what_validate_record_accepts() -> None:
    _check(_rows())


@pytest.mark.parametrize("size", [1, 2, 5])
def test_row_by_row_and_in_small_batches_too(size: int) -> None:
    rows = _rows()
    for start in range(0, len(rows), size):
        _check(rows[start:start + size])


def test_a_column_of_one_type_takes_the_whole_column_route_and_agrees() -> None:
    # every row's value of a field an int, or every one a float, or floats and None: the single-type paths
    for name, nullable, minimum, exclusive, maximum in NUMERIC_RULES:
        low = minimum if minimum is not None else 0.0
        high = maximum if maximum is not None else low + 1000
        inside = [low + (high - low) * k / 4 for k in range(1, 4)]
        edges = ([] if exclusive or minimum is None else [minimum]) + ([maximum] if maximum is not None else [])
        floats = [{**good_record(k), name: float(v)} for k, v in enumerate(inside + edges)]
        _check(floats)
        _check(floats + [{**good_record(9), name: math.nextafter(high, math.inf) if maximum is not None
                          else math.nextafter(low, -math.inf)}])
        if nullable:
            _check(floats + [{**good_record(8), name: None}])


def test_with_an_int_event_time_on_every_row_too() -> None:
    # every event_time an int: the whole-column route of event_time, which must not forget the other rules
    rows = [{**row, "event_time": row["event_time"] if type(row.get("event_time")) is int else 1_700_000_000_000 + i}
            for i, row in enumerate(_rows())]
    _check(rows)
    for start in range(0, len(rows), 3):
        _check(rows[start:start + 3])
