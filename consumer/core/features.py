"""How a batch of records becomes the model's input: one array per feature column, or a frame.

The columns themselves are the contract in ``schemas.features``, shared by training and scoring.
The trained scikit-learn Pipeline does its own imputation, one-hot encoding and scaling, so the frame (or the
columns) carries the raw 9 features.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from schemas.features import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    OCEAN_PROXIMITY_CATEGORIES,
    TARGET_COLUMN,
)

logger = logging.getLogger(__name__)


__all__ = [
    "CATEGORICAL_COLUMN",
    "FEATURE_COLUMNS",
    "NUMERIC_COLUMNS",
    "OCEAN_PROXIMITY_CATEGORIES",
    "TARGET_COLUMN",
    "FeatureColumns",
    "as_frame",
    "concat_columns",
    "model_frame",
    "row_count",
    "take_rows",
    "to_columns",
    "to_frame",
]


FeatureColumns = Mapping[str, np.ndarray]
"""A batch's features as one array per FEATURE_COLUMNS name (numeric float64, ``ocean_proximity`` object), all
of the same length: what the scoring loop passes around, since a DataFrame per batch costs more than the rest
of the batch's column work (about 0.25 ms each, whatever its size). ``as_frame`` makes one when needed."""


def to_columns(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """One array per feature for a whole batch, in FEATURE_COLUMNS order.

    :param records: validated records (schemas.validation.validate_record output, or any mappings
        with the 9 feature keys). ``None`` in a numeric column (total_bedrooms) becomes NaN.
    """
    # numpy turns None into NaN for a float64 array
    columns = {name: np.array([record[name] for record in records], dtype=np.float64) for name in NUMERIC_COLUMNS}
    categories = np.empty(len(records), dtype=object)
    categories[:] = [record[CATEGORICAL_COLUMN] for record in records]
    columns[CATEGORICAL_COLUMN] = categories
    return columns


def row_count(columns: FeatureColumns) -> int:
    return len(columns[CATEGORICAL_COLUMN])


def take_rows(columns: FeatureColumns, rows: Any) -> dict[str, np.ndarray]:
    """The rows at ``rows`` (a slice or an index array) of every column."""
    return {name: values[rows] for name, values in columns.items()}


def concat_columns(batches: Sequence[FeatureColumns]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([batch[name] for batch in batches]) for name in FEATURE_COLUMNS}


def as_frame(columns: FeatureColumns | pd.DataFrame) -> pd.DataFrame:
    """The FEATURE_COLUMNS frame (numeric float64, ``ocean_proximity`` object dtype, a RangeIndex)."""
    if isinstance(columns, pd.DataFrame):
        return columns
    data: dict[str, Any] = {name: columns[name] for name in NUMERIC_COLUMNS}
    # An explicit object Series: pandas 3 would otherwise infer its own string dtype.
    data[CATEGORICAL_COLUMN] = pd.Series(columns[CATEGORICAL_COLUMN], dtype=object)
    return pd.DataFrame(data, columns=list(FEATURE_COLUMNS))


def model_frame(columns: FeatureColumns | pd.DataFrame, names: Sequence[str], dtypes: Sequence[str]) -> pd.DataFrame:
    """The frame a model's signature asks for: only its columns, in its order, each cast to its dtype
    (``float64``, ``float32`` or ``object``). One per batch, never per record.

    :param columns: the batch's feature columns (or a frame holding at least ``names``).
    :param names: the columns the model takes (``consumer.core.signature.InputPlan.columns``).
    :param dtypes: their dtypes, in the same order.
    """
    data: dict[str, Any] = {}
    for name, dtype in zip(names, dtypes, strict=True):
        values = columns[name]
        if dtype == "object":
            # An explicit object Series: pandas 3 would otherwise infer its own string dtype.
            data[name] = pd.Series(np.asarray(values, dtype=object), dtype=object)
        else:
            data[name] = np.asarray(values, dtype=dtype)
    return pd.DataFrame(data, columns=list(names))


def to_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Build one DataFrame for a whole batch, column by column, in FEATURE_COLUMNS order (see ``to_columns``)."""
    return as_frame(to_columns(records))
