"""The numpy fast path refuses every encoder setting it does not reproduce (each condition on its own), and its
check rows are what they claim: every category, a missing total_bedrooms, and the version's input example."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from consumer.core.fastpath import check_frames, compile_predictor, complete_example, verified_predictor
from consumer.core.features import NUMERIC_COLUMNS
from schemas.examples import EXAMPLE_RECORD
from schemas.validation import OCEAN_PROXIMITY_CATEGORIES
from training.data import features_frame, load_housing

HOUSING = load_housing().sample(400, random_state=2)
TARGET = HOUSING["median_house_value"].to_numpy()
FRAME = features_frame(HOUSING)

DENSE_IGNORE: dict[str, Any] = {"handle_unknown": "ignore", "sparse_output": False}


def _pipeline(encoder: OneHotEncoder, categorical: list[str] | None = None) -> Pipeline:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    pre = ColumnTransformer([("num", numeric, list(NUMERIC_COLUMNS)),
                             ("cat", encoder, categorical or ["ocean_proximity"])])
    return Pipeline([("pre", pre), ("model", LinearRegression())]).fit(FRAME, TARGET)


def test_the_supported_encoder_gets_a_verified_fast_path() -> None:
    model = _pipeline(OneHotEncoder(**DENSE_IGNORE))
    fast = verified_predictor(model)
    assert fast is not None
    np.testing.assert_allclose(fast(FRAME), model.predict(FRAME), rtol=1e-12)
    unseen = FRAME.iloc[:3].assign(ocean_proximity="MARS")  # handle_unknown="ignore": a row of zeros
    np.testing.assert_allclose(fast(unseen), model.predict(unseen), rtol=1e-12)


@pytest.mark.parametrize("encoder", [
    OneHotEncoder(drop="first", **DENSE_IGNORE),
    OneHotEncoder(handle_unknown="error", sparse_output=False),
    OneHotEncoder(handle_unknown="ignore", sparse_output=True),
    OneHotEncoder(min_frequency=5, handle_unknown="infrequent_if_exist", sparse_output=False),
    OneHotEncoder(max_categories=2, handle_unknown="ignore", sparse_output=False),
], ids=["drop", "handle-unknown-error", "sparse", "min-frequency", "max-categories"])
def test_an_encoder_setting_it_does_not_reproduce_is_refused(encoder: OneHotEncoder) -> None:
    assert compile_predictor(_pipeline(encoder)) is None


def test_an_encoder_over_two_columns_is_refused() -> None:
    frame = FRAME.assign(second=np.where(FRAME["latitude"] > 36, "north", "south"))
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    pre = ColumnTransformer([("num", numeric, list(NUMERIC_COLUMNS)),
                             ("cat", OneHotEncoder(**DENSE_IGNORE), ["ocean_proximity", "second"])])
    model = Pipeline([("pre", pre), ("model", LinearRegression())]).fit(frame, TARGET)
    assert compile_predictor(model) is None


def test_check_frames_cover_every_category_and_a_missing_bedroom_count() -> None:
    [frame] = check_frames()
    assert list(frame["ocean_proximity"]) == [*OCEAN_PROXIMITY_CATEGORIES, EXAMPLE_RECORD["ocean_proximity"]]
    assert frame["total_bedrooms"].isna().tolist() == [False] * 5 + [True]
    assert (frame["median_income"] == EXAMPLE_RECORD["median_income"]).all()


def test_check_frames_add_the_input_example_completed() -> None:
    example = pd.DataFrame({"latitude": [34.0, 35.0], "ocean_proximity": ["INLAND", "ISLAND"]})
    frames = check_frames(example)
    assert len(frames) == 2
    pd.testing.assert_frame_equal(frames[1], complete_example(example))
    assert list(frames[1]["latitude"]) == [34.0, 35.0]
    assert list(frames[1]["longitude"]) == [EXAMPLE_RECORD["longitude"]] * 2
    assert len(check_frames(example.iloc[:0])) == 1  # an empty example adds nothing
    assert len(check_frames("not a frame")) == 1
