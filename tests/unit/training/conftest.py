"""Fixtures shared by training's unit tests: the housing data, a small seeded split, one BLAS/OpenMP thread."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from config.settings import PROJECT_ROOT
from training.data import load_housing, sample_rows, split

DATA = PROJECT_ROOT / "data" / "housing.csv"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # As in training and scoring: HistGradientBoosting's OpenMP pool collapses on a busy 2-core box.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def housing() -> pd.DataFrame:
    return load_housing(DATA)


@pytest.fixture(scope="module")
def small_split(housing: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    return split(sample_rows(housing, 375, seed=7), seed=42)  # 300 train rows
