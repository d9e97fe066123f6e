"""The feature contract: which columns a housing model takes, in which order, and the target it predicts.

One definition shared by training, the producer and the scorer.
"""

from __future__ import annotations

from typing import Final

from schemas.validation import OCEAN_PROXIMITY_CATEGORIES

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

__all__ = ["CATEGORICAL_COLUMN", "FEATURE_COLUMNS", "NUMERIC_COLUMNS", "OCEAN_PROXIMITY_CATEGORIES", "TARGET_COLUMN"]
