"""Loading and splitting the California-housing CSV for training.

The frames handed to the pipelines have exactly the shape the scorer builds with
``consumer.core.features.to_frame``: FEATURE_COLUMNS in order, numeric columns float64 (NaN where
missing), ``ocean_proximity`` object dtype, a fresh RangeIndex. pandas 3 reads text as its ``str``
dtype, so the categorical column is cast back to object here, once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from schemas.features import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_COLUMNS, TARGET_COLUMN

logger = logging.getLogger(__name__)

DEFAULT_DATA_PATH = "data/housing.csv"
TEST_SIZE = 0.2
"""Fraction held out for the metrics (fixed so runs are comparable)."""


class DataError(ValueError):
    """The CSV is missing, unreadable, or lacks a required column."""


def load_housing(path: str | Path = DEFAULT_DATA_PATH) -> pd.DataFrame:
    """Read the housing CSV into a frame with the feature dtypes plus the float64 target.

    :param path: CSV with the public dataset's header (the 9 features and median_house_value).
    :raises DataError: if the file cannot be read or a column is missing.
    """
    try:
        raw = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read housing data from {path}: {exc}") from exc
    required = (*FEATURE_COLUMNS, TARGET_COLUMN)
    missing = [col for col in required if col not in raw.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}")
    frame = pd.DataFrame(
        {col: raw[col].astype("float64") for col in (*NUMERIC_COLUMNS, TARGET_COLUMN)}
    )
    frame[CATEGORICAL_COLUMN] = raw[CATEGORICAL_COLUMN].astype(object)
    frame = frame[[*FEATURE_COLUMNS, TARGET_COLUMN]]
    # A row without a target cannot be learnt from; missing features are the pipeline's job.
    before = len(frame)
    frame = frame.dropna(subset=[TARGET_COLUMN]).reset_index(drop=True)
    if len(frame) < before:
        logger.warning("dropped %d row(s) without %s", before - len(frame), TARGET_COLUMN)
    logger.info("loaded %d rows from %s", len(frame), path)
    return frame


def sample_rows(df: pd.DataFrame, n: int | None, seed: int = 42) -> pd.DataFrame:
    """A seeded random sample of ``n`` rows (all rows when ``n`` is None or not smaller).

    :param df: frame from ``load_housing``.
    :param n: rows wanted (``--sample``), for fast runs and tests.
    :param seed: random_state of the sample.
    """
    if n is None or n >= len(df):
        return df
    if n < 10:
        raise DataError(f"--sample must be at least 10 rows, got {n}")
    return df.sample(n=n, random_state=seed).reset_index(drop=True)


def features_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The FEATURE_COLUMNS part of ``df`` with to_frame dtypes and a fresh RangeIndex."""
    out = pd.DataFrame({col: df[col].to_numpy(dtype="float64") for col in NUMERIC_COLUMNS})
    out[CATEGORICAL_COLUMN] = pd.Series(df[CATEGORICAL_COLUMN].to_numpy(dtype=object), dtype=object)
    return out[list(FEATURE_COLUMNS)]


def split(
    df: pd.DataFrame, seed: int = 42, test_size: float = TEST_SIZE
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The fixed, seeded train/test split.

    :param df: frame from ``load_housing`` (or ``sample_rows``).
    :param seed: random_state of the split (42 by default, as every earlier run used).
    :param test_size: held-out fraction.
    :returns: ``X_train, X_test, y_train, y_test``; X frames in FEATURE_COLUMNS order with
        to_frame dtypes, y float64 Series; all with fresh RangeIndexes.
    """
    train, test = train_test_split(df, test_size=test_size, random_state=seed)
    return (
        features_frame(train),
        features_frame(test),
        pd.Series(train[TARGET_COLUMN].to_numpy(dtype="float64"), name=TARGET_COLUMN),
        pd.Series(test[TARGET_COLUMN].to_numpy(dtype="float64"), name=TARGET_COLUMN),
    )
