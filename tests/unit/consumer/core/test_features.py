"""consumer.core.features: the column contract and the batch frame."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from config.settings import PROJECT_ROOT
from consumer.core.features import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    OCEAN_PROXIMITY_CATEGORIES,
    TARGET_COLUMN,
    as_frame,
    concat_columns,
    row_count,
    take_rows,
    to_columns,
    to_frame,
)
from schemas.examples import EXAMPLE_RECORD

CSV = PROJECT_ROOT / "data" / "housing.csv"

ROW: dict[str, Any] = {**EXAMPLE_RECORD, "record_id": "r-1", "event_time": None}


def test_contract_constants() -> None:
    assert FEATURE_COLUMNS == (
        "longitude",
        "latitude",
        "housing_median_age",
        "total_rooms",
        "total_bedrooms",
        "population",
        "households",
        "median_income",
        "ocean_proximity",
    )
    assert NUMERIC_COLUMNS == FEATURE_COLUMNS[:8]
    assert CATEGORICAL_COLUMN == "ocean_proximity"
    assert TARGET_COLUMN == "median_house_value"
    assert OCEAN_PROXIMITY_CATEGORIES == ("<1H OCEAN", "INLAND", "ISLAND", "NEAR BAY", "NEAR OCEAN")


def test_frame_columns_dtypes_and_values() -> None:
    second = {**ROW, "total_bedrooms": None, "ocean_proximity": "INLAND", "total_rooms": 7099}
    frame = to_frame([ROW, second])
    assert tuple(frame.columns) == FEATURE_COLUMNS
    assert all(frame[c].dtype == np.float64 for c in NUMERIC_COLUMNS)
    assert frame[CATEGORICAL_COLUMN].dtype == object
    assert list(frame.index) == [0, 1]
    assert frame.loc[0, "median_income"] == 8.3252
    assert frame.loc[1, "total_rooms"] == 7099.0
    assert math.isnan(frame.loc[1, "total_bedrooms"])
    assert list(frame[CATEGORICAL_COLUMN]) == ["NEAR BAY", "INLAND"]


def test_columns_are_the_frame_without_pandas() -> None:
    second = {**ROW, "total_bedrooms": None, "ocean_proximity": "INLAND"}
    columns = to_columns([ROW, second])
    assert tuple(columns) == FEATURE_COLUMNS and row_count(columns) == 2
    assert all(isinstance(values, np.ndarray) for values in columns.values())
    assert columns["total_bedrooms"].dtype == np.float64 and math.isnan(columns["total_bedrooms"][1])
    assert columns[CATEGORICAL_COLUMN].dtype == object and list(columns[CATEGORICAL_COLUMN]) == ["NEAR BAY", "INLAND"]
    pd.testing.assert_frame_equal(as_frame(columns), to_frame([ROW, second]))


def test_rows_of_columns_are_taken_and_concatenated_in_order() -> None:
    records = [{**ROW, "total_rooms": float(i)} for i in range(5)]
    columns = to_columns(records)
    kept = take_rows(columns, np.asarray([0, 3]))
    assert row_count(kept) == 2 and list(kept["total_rooms"]) == [0.0, 3.0]
    joined = concat_columns([kept, take_rows(columns, slice(4, 5))])
    pd.testing.assert_frame_equal(as_frame(joined), to_frame([records[0], records[3], records[4]]))
    assert row_count(to_columns([])) == 0


def test_extra_keys_are_ignored_and_input_untouched() -> None:
    record = dict(ROW)
    frame = to_frame([record])
    assert "record_id" not in frame.columns and "event_time" not in frame.columns
    assert record == ROW


def test_empty_batch_has_the_columns() -> None:
    frame = to_frame([])
    assert frame.shape == (0, 9)
    assert tuple(frame.columns) == FEATURE_COLUMNS
    assert frame["longitude"].dtype == np.float64
    assert frame[CATEGORICAL_COLUMN].dtype == object


def test_missing_feature_is_an_error() -> None:
    with pytest.raises(KeyError):
        to_frame([{k: v for k, v in ROW.items() if k != "latitude"}])


def test_same_frame_as_the_csv() -> None:
    csv = pd.read_csv(CSV, nrows=300)
    records = [
        {**row, "total_bedrooms": None if pd.isna(row["total_bedrooms"]) else row["total_bedrooms"]}
        for row in csv.drop(columns=[TARGET_COLUMN]).to_dict("records")
    ]
    frame = to_frame(records)
    expected = csv[list(FEATURE_COLUMNS)].astype({CATEGORICAL_COLUMN: object})
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["total_bedrooms"].isna().sum() == csv["total_bedrooms"].isna().sum() > 0
