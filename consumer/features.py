"""The feature contract: which columns the model takes, in which order, and how a batch becomes a frame.

One definition shared by training and scoring. The trained scikit-learn Pipeline does its own
imputation, one-hot encoding and scaling, so the frame carries the raw 9 features.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

from schemas.validation import OCEAN_PROXIMITY_CATEGORIES

logger = logging.getLogger(__name__)

FEATURE_COLUMNS: Final = (
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
NUMERIC_COLUMNS: Final = FEATURE_COLUMNS[:8]
CATEGORICAL_COLUMN: Final = "ocean_proximity"
TARGET_COLUMN: Final = "median_house_value"

__all__ = [
    "CATEGORICAL_COLUMN",
    "FEATURE_COLUMNS",
    "NUMERIC_COLUMNS",
    "OCEAN_PROXIMITY_CATEGORIES",
    "TARGET_COLUMN",
    "to_frame",
]


def to_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Build one DataFrame for a whole batch, column by column, in FEATURE_COLUMNS order.

    :param records: validated records (schemas.validation.validate_record output, or any mappings
        with the 9 feature keys). ``None`` in a numeric column (total_bedrooms) becomes NaN.
    :returns: numeric columns float64, ``ocean_proximity`` object dtype; a RangeIndex.
    """
    columns: dict[str, Any] = {}
    for name in NUMERIC_COLUMNS:
        # numpy turns None into NaN for a float64 array
        columns[name] = np.array([record[name] for record in records], dtype=np.float64)
    # An explicit object Series: pandas 3 would otherwise infer its own string dtype.
    columns[CATEGORICAL_COLUMN] = pd.Series([record[CATEGORICAL_COLUMN] for record in records], dtype=object)
    return pd.DataFrame(columns, columns=list(FEATURE_COLUMNS))
