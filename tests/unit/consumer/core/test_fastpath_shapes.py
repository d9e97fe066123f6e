"""The numpy fast path over ColumnTransformer shapes the trained pipelines do not have: one block only, a dropped
column listed first, columns given by position, and an imputer that learned no value for a column."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from consumer.core.fastpath import compile_predictor
from consumer.core.features import NUMERIC_COLUMNS
from training.data import features_frame, load_housing

HOUSING = load_housing().sample(300, random_state=4)
TARGET = HOUSING["median_house_value"].to_numpy()
FRAME = features_frame(HOUSING)
NUMBERS = list(NUMERIC_COLUMNS)


def _fit(pre: ColumnTransformer, frame: pd.DataFrame = FRAME) -> Pipeline:
    return Pipeline([("pre", pre), ("model", LinearRegression())]).fit(frame, TARGET)


def _assert_same_as_the_model(model: Pipeline) -> None:
    fast = compile_predictor(model)
    assert fast is not None
    expected = model.predict(FRAME)
    np.testing.assert_allclose(fast(FRAME), expected, rtol=1e-12, atol=0.0)
    np.testing.assert_allclose(fast({name: FRAME[name].to_numpy() for name in FRAME.columns}), expected,
                               rtol=1e-12, atol=0.0)


def test_a_single_block_pipeline_is_compiled() -> None:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    _assert_same_as_the_model(_fit(ColumnTransformer([("num", numeric, NUMBERS)])))


def test_a_dropped_column_listed_first_is_skipped_and_the_rest_compiled() -> None:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    pre = ColumnTransformer([("gone", "drop", ["households"]),
                             ("num", numeric, [c for c in NUMBERS if c != "households"])])
    _assert_same_as_the_model(_fit(pre))


def test_the_dropped_remainder_is_skipped() -> None:
    pre = ColumnTransformer([("num", SimpleImputer(strategy="median"), ["total_bedrooms", "median_income"])],
                            remainder="drop")
    _assert_same_as_the_model(_fit(pre))


def test_columns_given_by_position_are_refused() -> None:
    numbers = FRAME[NUMBERS].to_numpy(dtype=np.float64)
    pre = ColumnTransformer([("num", SimpleImputer(strategy="median"), [0, 1, 2])])
    model = Pipeline([("pre", pre), ("model", LinearRegression())]).fit(numbers, TARGET)
    assert compile_predictor(model) is None


def test_an_imputer_that_learned_no_value_for_a_column_is_refused() -> None:
    # A column all missing at fit: its statistic is NaN and SimpleImputer drops the column from its output.
    frame = FRAME.assign(total_bedrooms=np.nan)
    model = _fit(ColumnTransformer([("num", SimpleImputer(strategy="median"), ["total_bedrooms", "median_income"])]),
                 frame)
    assert model.named_steps["pre"].named_transformers_["num"].statistics_.shape == (2,)
    assert compile_predictor(model) is None
